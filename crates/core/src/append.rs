//! Appending the short pieces a preview is made of (keys, digits, type-name prefixes of a few
//! dozen bytes) to a `String` without a call to `memcpy` for each: for pieces this short the
//! call and its size dispatch cost more than the copy.

/// Pieces longer than this go through `push_str` (and `memcpy`).
const SHORT: usize = 64;

/// Appends `s` to `out`.
#[inline(always)]
pub fn str(out: &mut String, s: &str) {
    let n = s.len();
    if n > SHORT {
        out.push_str(s);
        return;
    }
    out.reserve(n);
    // SAFETY: `reserve` made room for `n` more bytes past `len`; `copy_short` writes exactly
    // the bytes `[len, len + n)` from `s`, which is valid UTF-8, so the string stays valid.
    unsafe {
        let v = out.as_mut_vec();
        let len = v.len();
        copy_short(s.as_ptr(), v.as_mut_ptr().add(len), n);
        v.set_len(len + n);
    }
}

/// Appends `v` in decimal.
#[inline(always)]
pub fn int(out: &mut String, v: i64) {
    str(out, itoa::Buffer::new().format(v));
}

/// Appends one ASCII byte.
#[inline(always)]
pub fn byte(out: &mut String, b: u8) {
    debug_assert!(b.is_ascii());
    // SAFETY: an ASCII byte is a whole UTF-8 character.
    unsafe { out.as_mut_vec().push(b) }
}

/// Appends `before`, then `v` in lowercase hexadecimal without leading zeros (as `%p`
/// prints an address), then `after`, with one check for room.
#[inline]
pub fn around_hex(out: &mut String, before: &str, v: u64, after: &str) {
    let digits = hex_digits(v);
    let shown = 16 - (v | 1).leading_zeros() as usize / 4;
    let n = before.len() + shown + after.len();
    out.reserve(n);
    // SAFETY: `reserve` made room for the `n` bytes written past `len`: `before` and `after`
    // are valid UTF-8 and the digits are ASCII, so the string stays valid.
    unsafe {
        let v = out.as_mut_vec();
        let len = v.len();
        let mut dst = v.as_mut_ptr().add(len);
        for piece in [before.as_bytes(), &digits[16 - shown..], after.as_bytes()] {
            if piece.len() > SHORT {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), dst, piece.len());
            } else {
                copy_short(piece.as_ptr(), dst, piece.len());
            }
            dst = dst.add(piece.len());
        }
        v.set_len(len + n);
    }
}

/// The 16 lowercase hex digits of `v`, most significant first, computed for all nibbles at
/// once (no table lookup per digit).
#[inline(always)]
pub fn hex_digits(v: u64) -> [u8; 16] {
    let spread = |x: u32| -> u64 {
        // Moves nibble i of x into the low half of byte i.
        let mut x = u64::from(x);
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        // 0..=9 → '0'..='9', 10..=15 → 'a'..='f' (0x61 = 0x30 + 10 + 0x27).
        let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        x + 0x3030_3030_3030_3030 + letters * 0x27
    };
    let high = spread((v >> 32) as u32).swap_bytes();
    let low = spread(v as u32).swap_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&high.to_le_bytes());
    out[8..].copy_from_slice(&low.to_le_bytes());
    out
}

/// Copies `n` (at most [`SHORT`]) bytes with a few possibly overlapping word moves.
///
/// # Safety
/// `src` is readable and `dst` writable for `n` bytes, and they do not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    if n >= 16 {
        // Whole 16-byte chunks, then the last 16 bytes (overlapping the previous chunk).
        let mut i = 0;
        while i + 16 < n {
            wr(dst.add(i) as *mut u128, rd(src.add(i) as *const u128));
            i += 16;
        }
        wr(
            dst.add(n - 16) as *mut u128,
            rd(src.add(n - 16) as *const u128),
        );
    } else if n >= 8 {
        let (a, b) = (rd(src as *const u64), rd(src.add(n - 8) as *const u64));
        wr(dst as *mut u64, a);
        wr(dst.add(n - 8) as *mut u64, b);
    } else if n >= 4 {
        let (a, b) = (rd(src as *const u32), rd(src.add(n - 4) as *const u32));
        wr(dst as *mut u32, a);
        wr(dst.add(n - 4) as *mut u32, b);
    } else if n > 0 {
        *dst = *src;
        *dst.add(n / 2) = *src.add(n / 2);
        *dst.add(n - 1) = *src.add(n - 1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copies_every_length() {
        let source: String = (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for n in 0..=150 {
            let mut out = String::from("x");
            super::str(&mut out, &source[..n]);
            assert_eq!(out, format!("x{}", &source[..n]), "length {n}");
        }
    }

    #[test]
    fn hex_matches_format() {
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            0xabc,
            0x7f81_8e24_4950,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
            0x8000_0000_0000_0000,
        ] {
            let mut out = String::from("x");
            super::around_hex(&mut out, "<at 0x", v, ">");
            assert_eq!(out, format!("x<at 0x{v:x}>"));
        }
    }
}
