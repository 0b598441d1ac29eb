// Package gzipseg writes a gzip member from pieces of deflate stream that
// were compressed once and are reused, so that the parts of a body that did
// not change since the last scrape cost a copy, not a compression.
//
// A Segment is some text compressed on its own: from an empty dictionary,
// ending with a sync flush. It refers to nothing before it and ends on a
// byte boundary, so it is a valid run of deflate blocks wherever it is
// placed in a stream. A Writer strings segments and freshly compressed text
// into one gzip member; its CRC-32 is combined from the segments' own, so
// the cached text is not read again. One deflate compressor does both, so
// a Writer compresses segments too, also between two members;
// CompressAlone makes a segment without one, in another goroutine.
//
//	w := gzipseg.NewWriter(out)
//	seg := new(gzipseg.Segment)
//	w.Compress(seg, text)        // once, while text stays the same
//	w.Write(header)              // fresh text
//	w.WriteSegment(seg)          // cached
//	w.Close()
//
// The decoded member is exactly the text written, in order; only the
// compressed bytes differ from one compression of the whole.
package gzipseg

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/flate"
)

// level is the compression of segments and fresh text: best speed, as the
// handler's gzip writers; a scrape's text is repetitive enough that higher
// levels buy little and cost several times the CPU.
const level = flate.BestSpeed

// Segment is text compressed on its own, with what the gzip trailer needs
// of it.
type Segment struct {
	data []byte
	crc  uint32
	size int64
	// shift is x^(8·size) modulo the CRC polynomial, what combine works
	// out from size: computed once here, not at every member it is in.
	shift uint32
}

// Writer writes one gzip member to an io.Writer. Text given to Write is
// compressed as it comes; segments are copied. It is not safe for
// concurrent use.
type Writer struct {
	w   io.Writer
	fw  *flate.Writer
	buf bytes.Buffer // a segment being compressed
	crc uint32
	n   int64
	// fresh is whether fw has written since the last segment: it must then
	// be flushed to a byte boundary before the next one, and started anew
	// after it, since its dictionary no longer ends where the stream does.
	fresh   bool
	started bool
	err     error
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer {
	fw, err := flate.NewWriter(w, level)
	if err != nil {
		panic(err) // level is valid
	}
	return &Writer{w: w, fw: fw}
}

// Reset makes z write a new member to w, keeping its compressor.
func (z *Writer) Reset(w io.Writer) {
	z.fw.Reset(w)
	z.w, z.crc, z.n, z.fresh, z.started, z.err = w, 0, 0, false, false, nil
}

// Compress sets seg to text compressed on its own, reusing seg's buffer.
// Text written to the member before it is flushed first, as its compressor
// is then used for the segment.
func (z *Writer) Compress(seg *Segment, text []byte) {
	z.flush()
	z.buf.Reset()
	z.fw.Reset(&z.buf)
	// A bytes.Buffer does not fail, and neither does the flate writer over one.
	_, _ = z.fw.Write(text)
	_ = z.fw.Flush()
	seg.set(z.buf.Bytes(), text)
}

// CompressAlone sets seg to text compressed on its own, as Compress does,
// without a Writer: with klauspost's stateless deflate, whose state is
// pooled, not a compressor's 800 KB kept for good. Its output compresses
// a little less; it suits text of a few kilobytes compressed beside a
// Writer, in another goroutine.
func CompressAlone(seg *Segment, text []byte) {
	buf := bytes.NewBuffer(seg.data[:0]) // seg's own buffer, reused
	// Not the end of the stream: the output ends with an empty stored
	// block, on a byte boundary, as a sync flush does. A bytes.Buffer does
	// not fail.
	_ = flate.StatelessDeflate(buf, text, false, nil)
	seg.data = buf.Bytes()
	seg.setText(text)
}

// set makes seg the compressed data of text.
func (seg *Segment) set(data, text []byte) {
	seg.data = append(seg.data[:0], data...)
	seg.setText(text)
}

// setText records what the gzip trailer needs of text, seg's plain text.
func (seg *Segment) setText(text []byte) {
	seg.crc = crc32.ChecksumIEEE(text)
	seg.size = int64(len(text))
	seg.shift = xpow8(seg.size)
}

// header is a gzip member header: deflate, no name, no time, fastest
// compression (XFL 4), unknown system.
var header = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255}

func (z *Writer) start() {
	if !z.started {
		z.started = true
		_, z.err = z.w.Write(header)
	}
}

// Write compresses p into the member.
func (z *Writer) Write(p []byte) (int, error) {
	z.start()
	if z.err != nil {
		return 0, z.err
	}
	if !z.fresh {
		z.fw.Reset(z.w)
		z.fresh = true
	}
	n, err := z.fw.Write(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p[:n])
	z.n += int64(n)
	z.err = err
	return n, err
}

// Err is the first error the underlying writer returned, if any; once it
// failed, the Writer writes nothing more.
func (z *Writer) Err() error { return z.err }

// WriteSegment copies seg into the member.
func (z *Writer) WriteSegment(seg *Segment) error {
	z.start()
	z.flush()
	if z.err != nil {
		return z.err
	}
	_, z.err = z.w.Write(seg.data)
	z.crc = combineShifted(z.crc, seg.crc, seg.shift)
	z.n += seg.size
	return z.err
}

func (z *Writer) flush() {
	if z.fresh && z.err == nil {
		z.err = z.fw.Flush()
	}
	z.fresh = false
}

// lastBlock is an empty stored block marked final: BFINAL 1, BTYPE 00,
// padding to the byte, then LEN 0 and its complement.
var lastBlock = []byte{1, 0, 0, 0xff, 0xff}

// Close ends the deflate stream and writes the gzip trailer. It does not
// close the underlying writer.
func (z *Writer) Close() error {
	z.start()
	z.flush()
	if z.err != nil {
		return z.err
	}
	var trailer [13]byte
	copy(trailer[:], lastBlock)
	binary.LittleEndian.PutUint32(trailer[5:], z.crc)
	binary.LittleEndian.PutUint32(trailer[9:], uint32(z.n)) // ISIZE is the size modulo 2^32
	_, z.err = z.w.Write(trailer[:])
	return z.err
}
