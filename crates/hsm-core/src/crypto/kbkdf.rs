//! NIST SP 800-108 key derivation in counter and feedback mode (PKCS#11
//! `CKM_SP800_108_COUNTER_KDF` / `CKM_SP800_108_FEEDBACK_KDF`), with HMAC or AES-CMAC
//! from aws-lc-rs as the PRF. The PRF input is the caller's fields, concatenated in their
//! order; keys take whole PRF outputs ("segments"), each key its own.

use super::{CryptoError, CryptoResult, HashAlg, Mac};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

/// The pseudo-random function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prf {
    Hmac(HashAlg),
    AesCmac,
}

impl Prf {
    fn output_len(self) -> usize {
        match self {
            Prf::Hmac(h) => h.output_len(),
            Prf::AesCmac => 16,
        }
    }

    fn run(self, key: &[u8], data: &[u8]) -> CryptoResult<Vec<u8>> {
        let mut m = match self {
            Prf::Hmac(h) => Mac::new(h, key)?,
            Prf::AesCmac => Mac::aes_cmac(key)?,
        };
        m.update(data);
        Ok(m.finish())
    }
}

/// How an integer is written into the PRF input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntFormat {
    pub little_endian: bool,
    pub bits: u64,
}

impl IntFormat {
    fn write(self, value: u64, out: &mut Vec<u8>) {
        let n = (self.bits / 8) as usize;
        let be = value.to_be_bytes();
        let mut bytes = be[8 - n..].to_vec();
        if self.little_endian {
            bytes.reverse();
        }
        out.extend_from_slice(&bytes);
    }
}

/// What the DKM length field counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DkmMethod {
    SumOfKeys,
    SumOfSegments,
}

/// One field of the PRF input (`CK_PRF_DATA_PARAM`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Field {
    /// The counter (counter mode, with its format) or the previous output (feedback mode).
    Iteration(Option<IntFormat>),
    /// Feedback mode's optional counter.
    Counter(IntFormat),
    DkmLength(DkmMethod, IntFormat),
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Counter,
    /// With the IV that stands for the output before the first (may be empty).
    Feedback(Vec<u8>),
}

fn invalid(why: impl Into<String>) -> CryptoError {
    CryptoError::MechanismParamInvalid(why.into())
}

/// Checks the fields for the mode: exactly one iteration variable of the mode's kind,
/// at most one counter (feedback mode only) and one DKM length, widths PKCS#11 and
/// SP 800-108 allow, no empty byte array.
fn check(mode: &Mode, fields: &[Field]) -> CryptoResult<()> {
    let count = |f: fn(&Field) -> bool| fields.iter().filter(|x| f(x)).count();
    if count(|f| matches!(f, Field::Iteration(_))) != 1 {
        return Err(invalid("exactly one iteration variable"));
    }
    if count(|f| matches!(f, Field::DkmLength(..))) > 1 {
        return Err(invalid("at most one DKM length"));
    }
    let counters = count(|f| matches!(f, Field::Counter(_)));
    for f in fields {
        match (mode, f) {
            (Mode::Counter, Field::Iteration(Some(c))) | (Mode::Feedback(_), Field::Counter(c)) => {
                if !matches!(c.bits, 8 | 16 | 24 | 32) {
                    return Err(invalid("a counter is 8, 16, 24 or 32 bits wide"));
                }
            }
            (Mode::Counter, Field::Iteration(None)) => {
                return Err(invalid(
                    "the counter-mode iteration variable needs its format",
                ));
            }
            (Mode::Feedback(_), Field::Iteration(Some(_))) => {
                return Err(invalid(
                    "the feedback-mode iteration variable takes no format",
                ));
            }
            (Mode::Counter, Field::Counter(_)) => {
                return Err(invalid("counter mode has no separate counter field"));
            }
            (_, Field::DkmLength(_, l)) => {
                if l.bits == 0 || l.bits > 64 || !l.bits.is_multiple_of(8) {
                    return Err(invalid("a DKM length is 8 to 64 bits wide, in whole bytes"));
                }
            }
            (_, Field::Bytes(b)) if b.is_empty() => {
                return Err(invalid("an empty byte array"));
            }
            _ => {}
        }
    }
    if counters > 1 {
        return Err(invalid("at most one counter"));
    }
    Ok(())
}

/// Derives keys of `key_lens` bytes, in order, from `key`.
pub fn kbkdf(
    prf: Prf,
    key: &[u8],
    mode: &Mode,
    fields: &[Field],
    key_lens: &[usize],
) -> CryptoResult<Vec<SecretBytes>> {
    check(mode, fields)?;
    let h = prf.output_len();
    if key_lens.is_empty() || key_lens.contains(&0) {
        return Err(invalid("every derived key needs a length"));
    }
    let segments: u64 = key_lens.iter().map(|l| l.div_ceil(h) as u64).sum();
    let max_segments = match (
        mode,
        fields.iter().find_map(|f| match f {
            Field::Iteration(Some(c)) => Some(c.bits),
            _ => None,
        }),
    ) {
        (Mode::Counter, Some(bits)) => (1u64 << bits) - 1,
        _ => u32::MAX as u64,
    };
    if segments > max_segments {
        return Err(CryptoError::DataLenRange);
    }
    let dkm_bits = |method: DkmMethod| -> u64 {
        match method {
            DkmMethod::SumOfKeys => key_lens.iter().map(|l| *l as u64 * 8).sum(),
            DkmMethod::SumOfSegments => segments * h as u64 * 8,
        }
    };
    for f in fields {
        if let Field::DkmLength(method, fmt) = f
            && fmt.bits < 64
            && dkm_bits(*method) >> fmt.bits != 0
        {
            return Err(invalid("the DKM length does not fit its width"));
        }
    }
    let mut dkm = Zeroizing::new(Vec::with_capacity(segments as usize * h));
    let mut previous = Zeroizing::new(match mode {
        Mode::Feedback(iv) => iv.clone(),
        Mode::Counter => Vec::new(),
    });
    for i in 1..=segments {
        let mut input = Zeroizing::new(Vec::new());
        for f in fields {
            match f {
                Field::Iteration(Some(c)) => c.write(i, &mut input),
                Field::Iteration(None) => input.extend_from_slice(&previous),
                Field::Counter(c) => c.write(i, &mut input),
                Field::DkmLength(method, fmt) => fmt.write(dkm_bits(*method), &mut input),
                Field::Bytes(b) => input.extend_from_slice(b),
            }
        }
        let k = Zeroizing::new(prf.run(key, &input)?);
        dkm.extend_from_slice(&k);
        *previous = k.to_vec();
    }
    let mut keys = Vec::with_capacity(key_lens.len());
    let mut at = 0;
    for len in key_lens {
        keys.push(SecretBytes::from_slice(&dkm[at..at + len]));
        at += len.div_ceil(h) * h;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(bits: u64) -> IntFormat {
        IntFormat {
            little_endian: false,
            bits,
        }
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        Prf::Hmac(HashAlg::Sha256).run(key, data).unwrap()
    }

    /// SP 800-108 §5.1 written out by hand for two segments:
    /// K(i) = PRF(K, [i]_16 || label || 0x00 || context || [L]_32).
    #[test]
    fn counter_mode_is_the_formula() {
        let key = [0x0bu8; 32];
        let fields = [
            Field::Iteration(Some(be(16))),
            Field::Bytes(b"label".to_vec()),
            Field::Bytes(vec![0]),
            Field::Bytes(b"context".to_vec()),
            Field::DkmLength(DkmMethod::SumOfKeys, be(32)),
        ];
        let out = kbkdf(
            Prf::Hmac(HashAlg::Sha256),
            &key,
            &Mode::Counter,
            &fields,
            &[40],
        )
        .unwrap();
        let input = |i: u8| [&[0, i][..], b"label\0context", &320u32.to_be_bytes()].concat();
        let want = [hmac(&key, &input(1)), hmac(&key, &input(2))].concat();
        assert_eq!(out[0].expose(), &want[..40]);
    }

    /// §5.2: K(i) = PRF(K, K(i-1) || [i]_8 || fixed), K(0) = IV; keys start on segment
    /// boundaries, and SUM_OF_SEGMENTS counts whole segments.
    #[test]
    fn feedback_mode_is_the_formula_and_keys_take_whole_segments() {
        let key = [0x0cu8; 20];
        let iv = vec![0xa5; 32];
        let fields = [
            Field::Iteration(None),
            Field::Counter(IntFormat {
                little_endian: true,
                bits: 8,
            }),
            Field::Bytes(b"fixed".to_vec()),
            Field::DkmLength(DkmMethod::SumOfSegments, be(16)),
        ];
        let out = kbkdf(
            Prf::Hmac(HashAlg::Sha256),
            &key,
            &Mode::Feedback(iv.clone()),
            &fields,
            &[48, 16],
        )
        .unwrap();
        // 48 bytes take two segments, 16 bytes a third: L = 3 * 256 bits = 768.
        let l = 768u16.to_be_bytes();
        let k1 = hmac(&key, &[&iv[..], &[1], b"fixed", &l].concat());
        let k2 = hmac(&key, &[&k1[..], &[2], b"fixed", &l].concat());
        let k3 = hmac(&key, &[&k2[..], &[3], b"fixed", &l].concat());
        assert_eq!(out[0].expose(), &[k1, k2[..16].to_vec()].concat()[..]);
        assert_eq!(out[1].expose(), &k3[..16]);
    }

    #[test]
    fn little_endian_and_widths_are_encoded_as_asked() {
        let mut v = Vec::new();
        IntFormat {
            little_endian: true,
            bits: 24,
        }
        .write(0x010203, &mut v);
        be(16).write(0x0405, &mut v);
        assert_eq!(v, [3, 2, 1, 4, 5]);
    }

    #[test]
    fn bad_field_sets_are_refused() {
        let ok = Field::Iteration(Some(be(16)));
        let bad: [(Mode, Vec<Field>); 8] = [
            (Mode::Counter, vec![]),
            (Mode::Counter, vec![ok.clone(), ok.clone()]),
            (Mode::Counter, vec![Field::Iteration(None)]),
            (Mode::Counter, vec![Field::Iteration(Some(be(12)))]),
            (Mode::Counter, vec![ok.clone(), Field::Counter(be(8))]),
            (Mode::Feedback(vec![]), vec![ok.clone()]),
            (
                Mode::Counter,
                vec![ok.clone(), Field::DkmLength(DkmMethod::SumOfKeys, be(7))],
            ),
            (Mode::Counter, vec![ok.clone(), Field::Bytes(vec![])]),
        ];
        for (mode, fields) in bad {
            assert!(
                matches!(
                    kbkdf(Prf::AesCmac, &[1; 16], &mode, &fields, &[16]),
                    Err(CryptoError::MechanismParamInvalid(_))
                ),
                "{mode:?} {fields:?}"
            );
        }
        // An 8-bit counter runs out after 255 segments of 16 bytes.
        let fields = [Field::Iteration(Some(be(8)))];
        assert!(kbkdf(Prf::AesCmac, &[1; 16], &Mode::Counter, &fields, &[255 * 16]).is_ok());
        assert!(matches!(
            kbkdf(
                Prf::AesCmac,
                &[1; 16],
                &Mode::Counter,
                &fields,
                &[255 * 16 + 1]
            ),
            Err(CryptoError::DataLenRange)
        ));
        // An 8-bit DKM length cannot say 256 bits.
        let fields = [
            Field::Iteration(Some(be(8))),
            Field::DkmLength(DkmMethod::SumOfKeys, be(8)),
        ];
        assert!(kbkdf(Prf::AesCmac, &[1; 16], &Mode::Counter, &fields, &[32]).is_err());
    }
}
