package gzipseg

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
)

func TestCombineMatchesChecksumOfConcatenation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		a := randomText(r, r.IntN(3000))
		b := randomText(r, r.IntN(3000))
		if i%50 == 0 {
			b = b[:0]
		}
		want := crc32.ChecksumIEEE(append(append([]byte{}, a...), b...))
		got := combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b)))
		if got != want {
			t.Fatalf("case %d (%d+%d bytes): combine = %08x, crc32 of the concatenation = %08x", i, len(a), len(b), got, want)
		}
	}
}

// TestMemberDecodesToTextInOrder mixes fresh text and segments, reused
// and recompressed, and checks what the standard library's gzip reader
// (which checks the CRC and size) decodes.
func TestMemberDecodesToTextInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var out bytes.Buffer
	z := NewWriter(&out)
	segs := make([]*Segment, 8)
	texts := make([][]byte, len(segs))
	// Segments come from the Writer's compressor or from CompressAlone.
	compress := func(seg *Segment, text []byte) {
		if r.IntN(2) == 0 {
			z.Compress(seg, text)
		} else {
			CompressAlone(seg, text)
		}
	}
	for i := range segs {
		segs[i] = new(Segment)
		texts[i] = randomText(r, r.IntN(40000))
		compress(segs[i], texts[i])
	}
	for round := range 30 {
		out.Reset()
		z.Reset(&out)
		var want []byte
		for range r.IntN(12) {
			if r.IntN(3) == 0 {
				p := randomText(r, r.IntN(20000))
				if _, err := z.Write(p); err != nil {
					t.Fatal(err)
				}
				want = append(want, p...)
			} else {
				i := r.IntN(len(segs))
				if r.IntN(4) == 0 { // the text changed: compress it again, mid-member
					texts[i] = randomText(r, r.IntN(40000))
					compress(segs[i], texts[i])
				}
				if err := z.WriteSegment(segs[i]); err != nil {
					t.Fatal(err)
				}
				want = append(want, texts[i]...)
			}
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		br := bytes.NewReader(out.Bytes())
		gr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		gr.Multistream(false)
		got, err := io.ReadAll(gr)
		if err != nil {
			t.Fatalf("round %d: decoding: %v", round, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: decoded %d bytes, want %d, first difference at %d", round, len(got), len(want), firstDiff(got, want))
		}
		if br.Len() != 0 {
			t.Fatalf("round %d: %d bytes after the member's trailer", round, br.Len())
		}
	}
}

// TestSegmentStandsAlone: a segment is a deflate stream of its own, once
// ended, so it depends on nothing written before it.
func TestSegmentStandsAlone(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	z := NewWriter(io.Discard)
	var seg Segment
	for range 20 {
		text := randomText(r, r.IntN(50000))
		z.Compress(&seg, text)
		stream := append(append([]byte{}, seg.data...), lastBlock...)
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, text) || seg.size != int64(len(text)) {
			t.Fatalf("segment decodes to %d bytes, want %d", len(got), len(text))
		}
	}
}

func TestEmptyMember(t *testing.T) {
	var out bytes.Buffer
	if err := NewWriter(&out).Close(); err != nil {
		t.Fatal(err)
	}
	gr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(gr); err != nil || len(got) != 0 {
		t.Fatalf("empty member decodes to %q, %v", got, err)
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

func TestWriteErrorSticks(t *testing.T) {
	z := NewWriter(&failingWriter{after: 12})
	var seg Segment
	z.Compress(&seg, []byte("some text"))
	_ = z.WriteSegment(&seg)
	if err := z.WriteSegment(&seg); err == nil {
		t.Fatal("no error writing past the writer's failure")
	}
	if err := z.Close(); err == nil {
		t.Fatal("Close after a failed write reports no error")
	}
}

// randomText is exposition-like: lines that repeat with small changes, so
// that compression finds matches, with any byte now and then.
func randomText(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	words := []string{"listenq_queue_length{", `pod="web-`, `",port="80`, "} 0\n", "\\\"", "\n", "\xff\xfe"}
	for len(b) < n {
		if r.IntN(10) == 0 {
			b = append(b, byte(r.IntN(256)))
			continue
		}
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestZeroSegmentIsEmpty: a Segment never compressed adds nothing, and
// leaves the CRC as it was.
func TestZeroSegmentIsEmpty(t *testing.T) {
	var out bytes.Buffer
	z := NewWriter(&out)
	if _, err := z.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := z.WriteSegment(new(Segment)); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	gr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(gr); err != nil || string(got) != "hello" {
		t.Fatalf("decodes to %q, %v; want \"hello\"", got, err)
	}
}
