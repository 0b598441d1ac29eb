package gzipseg

// CRC-32 (IEEE) combination: the CRC of a concatenation from the CRCs of
// its parts, by polynomial arithmetic modulo the CRC polynomial. The
// register is kept reflected, as hash/crc32 keeps it: the top bit is the
// coefficient of x^0. The CRC's pre- and post-inversion cancel out of the
// combination, which is why the formula in combine needs no correction.

// poly is the IEEE polynomial, reflected.
const poly = 0xedb88320

// one is the polynomial 1 (x^0), reflected.
const one = 1 << 31

// mulmod returns a·b modulo poly.
func mulmod(a, b uint32) uint32 {
	var p uint32
	for m := uint32(one); m != 0 && a != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			a ^= m
		}
		// b·x: a shift toward the high powers, reducing what falls off.
		if b&1 != 0 {
			b = b>>1 ^ poly
		} else {
			b >>= 1
		}
	}
	return p
}

// xpow8 returns x^(8n) modulo poly: what n bytes appended shift a CRC by.
func xpow8(n int64) uint32 {
	result := uint32(one)
	base := uint32(one >> 8) // x^8
	for e := uint64(n); e != 0; e >>= 1 {
		if e&1 != 0 {
			result = mulmod(result, base)
		}
		base = mulmod(base, base)
	}
	return result
}

// combine returns the CRC-32 (IEEE) of A followed by B, given crcA, the
// CRC of A, and crcB, the CRC of B, whose length is sizeB.
func combine(crcA, crcB uint32, sizeB int64) uint32 {
	return combineShifted(crcA, crcB, xpow8(sizeB))
}

// combineShifted is combine with x^(8·sizeB) already worked out. A shift of
// 0 is a Segment never compressed, which is empty: x^k is never 0 modulo
// the polynomial.
func combineShifted(crcA, crcB, shift uint32) uint32 {
	if shift == 0 {
		return crcA
	}
	return mulmod(shift, crcA) ^ crcB
}
