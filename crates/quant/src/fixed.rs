//! Fixed-point number types with the semantics of the Xilinx/AMD arbitrary-precision
//! types that hls4ml generates (`ap_fixed<W, I, Q, O>` and `ap_ufixed<W, I, Q, O>`, from
//! `ap_fixed_base.h` of the `ap_types` headers hls4ml ships).
//!
//! A value is an integer `raw` of `W` bits scaled by `2^-F` with `F = W - I` fraction
//! bits: signed types hold `raw` in `[-2^(W-1), 2^(W-1) - 1]`, unsigned ones in
//! `[0, 2^W - 1]`. Converting a real number first rounds `x 2^F` to an integer (the
//! quantisation mode `Q`), then brings it into range (the overflow mode `O`), exactly as
//! the C++ assignment `ap_fixed<W, I, Q, O> y = x;` does for a `double` x.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{QuantError, Result};

/// The widest type the integer engine holds (its accumulators are 32-bit types; sums
/// are carried in 64 bits before they are cast).
pub const MAX_WIDTH: u32 = 32;

/// How the bits below the least significant one are dropped (`ap_q_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// `AP_TRN`: towards minus infinity (the C++ default).
    Trn,
    /// `AP_RND`: to the nearest, halves towards plus infinity.
    Rnd,
    /// `AP_RND_CONV`: to the nearest, halves to even (QONNX's `ROUND`).
    RndConv,
}

/// What happens to values outside the range (`ap_o_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// `AP_WRAP`: two's complement wrap-around (the C++ default).
    Wrap,
    /// `AP_SAT`: clamp to the largest or smallest value.
    Sat,
}

/// A fixed-point type: `ap_fixed<W, I, Q, O>` (signed) or `ap_ufixed<W, I, Q, O>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedType {
    width: u32,
    integer: i32,
    signed: bool,
    rounding: Rounding,
    overflow: Overflow,
}

impl FixedType {
    /// `W` total bits of which `I` are integer bits (the sign bit included for signed
    /// types).
    ///
    /// # Errors
    /// [`QuantError::BadType`] for `W = 0`, `W > 32`, `I > W`, or more than 62 fraction
    /// bits (`W - I > 62`), which no 64-bit engine register can align.
    pub fn new(
        width: u32,
        integer: i32,
        signed: bool,
        rounding: Rounding,
        overflow: Overflow,
    ) -> Result<Self> {
        let t = Self {
            width,
            integer,
            signed,
            rounding,
            overflow,
        };
        let problem = if width == 0 {
            Some("W = 0: a type needs at least one bit".to_owned())
        } else if width > MAX_WIDTH {
            Some(format!(
                "W = {width} > {MAX_WIDTH}: the integer engine's accumulators are 32-bit"
            ))
        } else if integer > width as i32 {
            Some(format!("I = {integer} > W = {width}"))
        } else if width as i32 - integer > 62 {
            Some(format!("{} fraction bits > 62", width as i32 - integer))
        } else {
            None
        };
        match problem {
            Some(detail) => Err(QuantError::BadType {
                spec: t.to_string(),
                detail,
            }),
            None => Ok(t),
        }
    }

    /// Total bits `W`.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Integer bits `I`.
    pub fn integer(&self) -> i32 {
        self.integer
    }

    /// Fraction bits `F = W - I` (never negative: [`FixedType::new`] refuses `I > W`).
    pub fn fraction(&self) -> i32 {
        self.width as i32 - self.integer
    }

    /// Whether the type is signed (`ap_fixed`) or not (`ap_ufixed`).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The quantisation mode.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// The overflow mode.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// The smallest raw integer.
    pub fn min_raw(&self) -> i64 {
        if self.signed {
            -(1i64 << (self.width - 1))
        } else {
            0
        }
    }

    /// The largest raw integer.
    pub fn max_raw(&self) -> i64 {
        if self.signed {
            (1i64 << (self.width - 1)) - 1
        } else {
            (1i64 << self.width) - 1
        }
    }

    /// The value of one least significant bit, `2^-F`.
    pub fn lsb(&self) -> f64 {
        pow2(-self.fraction())
    }

    /// The real value of `raw`.
    pub fn value(&self, raw: i64) -> f64 {
        raw as f64 * self.lsb()
    }

    /// The raw integer the C++ assignment of the `double` `x` stores. NaN maps to 0
    /// (the engine never sees one: inputs are checked before quantisation).
    pub fn quantize_raw(&self, x: f64) -> i64 {
        if x.is_nan() {
            return 0;
        }
        // x 2^F is exact (a power-of-two scale); clamping to +-2^63 first keeps the
        // float-to-int cast defined, and values that far out saturate or wrap alike.
        let scaled = (x * pow2(self.fraction())).clamp(-9.0e18, 9.0e18);
        let rounded = match self.rounding {
            Rounding::Trn => scaled.floor(),
            Rounding::Rnd => (scaled + 0.5).floor(),
            Rounding::RndConv => scaled.round_ties_even(),
        };
        self.fit(rounded as i64)
    }

    /// `x` quantised to this type, as a real number.
    pub fn quantize(&self, x: f64) -> f64 {
        self.value(self.quantize_raw(x))
    }

    /// The raw integer of this type for `raw` with `from_fraction` fraction bits: the
    /// exact integer form of [`FixedType::quantize_raw`] ([`Cast`] once per call).
    pub fn requantize(&self, raw: i64, from_fraction: i32) -> i64 {
        Cast::new(from_fraction, *self).apply(raw)
    }

    /// Brings an already rounded integer into range.
    fn fit(&self, raw: i64) -> i64 {
        match self.overflow {
            Overflow::Sat => raw.clamp(self.min_raw(), self.max_raw()),
            Overflow::Wrap => wrap(raw, self.width, self.signed),
        }
    }

    /// Whether `raw` lies in range, so that [`FixedType::quantize`] leaves its value
    /// unchanged.
    pub fn holds(&self, raw: i64) -> bool {
        (self.min_raw()..=self.max_raw()).contains(&raw)
    }
}

/// `2^e` for the exponents the types use.
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// Two's complement wrap of `raw` to `width` bits.
#[inline]
fn wrap(raw: i64, width: u32, signed: bool) -> i64 {
    let unused = 64 - width;
    if signed {
        (raw << unused) >> unused
    } else {
        ((raw as u64) << unused >> unused) as i64
    }
}

/// A cast of raw integers with `from` fraction bits to a [`FixedType`], its shifts and
/// bounds worked out once: what the engine applies to every sum.
#[derive(Debug, Clone, Copy)]
pub struct Cast {
    /// Right shift (negative: left shift) from the source to the target fraction bits.
    shift: i32,
    to: FixedType,
    min: i64,
    max: i64,
}

impl Cast {
    /// The cast from `from_fraction` fraction bits to `to`.
    pub fn new(from_fraction: i32, to: FixedType) -> Self {
        Self {
            shift: (from_fraction - to.fraction()).clamp(-63, 63),
            to,
            min: to.min_raw(),
            max: to.max_raw(),
        }
    }

    /// `raw` rounded by the target's mode and brought into range by its overflow mode
    /// (one value: [`Cast::apply_all`]'s arithmetic without its loops).
    #[inline]
    pub fn apply(&self, raw: i64) -> i64 {
        let rounded = if self.shift <= 0 {
            raw << -self.shift
        } else {
            let s = self.shift as u32;
            let floor = raw >> s;
            match self.to.rounding {
                Rounding::Trn => floor,
                Rounding::Rnd => (raw + (1i64 << (s - 1))) >> s,
                Rounding::RndConv => {
                    let (rest, half) = (raw - (floor << s), 1i64 << (s - 1));
                    floor + i64::from(rest > half || (rest == half && floor & 1 == 1))
                }
            }
        };
        match self.to.overflow {
            Overflow::Sat => rounded.clamp(self.min, self.max),
            Overflow::Wrap => wrap(rounded, self.to.width, self.to.signed),
        }
    }

    /// [`Cast::apply`] to every value, then `max(floor)` (a ReLU with `floor = 0`): the
    /// modes are matched once per slice, so the loops are branch-free; with AVX2 they
    /// run four 64-bit lanes at a time (SSE2, the baseline, has no 64-bit compare).
    #[inline]
    pub fn apply_all(&self, values: &mut [i64], floor: i64) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                self.apply_all_avx2(values, floor);
            }
            return;
        }
        self.apply_all_portable(values, floor);
    }

    /// [`Cast::apply_all`] compiled for AVX2 (same integer arithmetic, same results).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn apply_all_avx2(&self, values: &mut [i64], floor: i64) {
        self.apply_all_portable(values, floor);
    }

    /// [`Cast::apply_all`]'s loops (always inlined, so that the AVX2 build compiles them
    /// with its features).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn apply_all_portable(&self, values: &mut [i64], floor: i64) {
        let (min, max) = (self.min.max(floor), self.max.max(floor));
        let sat = self.to.overflow == Overflow::Sat;
        let (width, signed) = (self.to.width, self.to.signed);
        let fit = |v: i64| {
            if sat {
                v.clamp(min, max)
            } else {
                wrap(v, width, signed).max(floor)
            }
        };
        if self.shift <= 0 {
            let s = -self.shift;
            for v in values.iter_mut() {
                *v = fit(*v << s);
            }
            return;
        }
        let s = self.shift as u32;
        let half = 1i64 << (s - 1);
        #[allow(clippy::needless_for_each)]
        match self.to.rounding {
            Rounding::Trn => values.iter_mut().for_each(|v| *v = fit(*v >> s)),
            Rounding::Rnd => values.iter_mut().for_each(|v| *v = fit((*v + half) >> s)),
            Rounding::RndConv => values.iter_mut().for_each(|v| {
                let floor = *v >> s;
                let rest = *v - (floor << s);
                // Branch-free on purpose (the loop vectorises): up when above the half,
                // or at it with an odd floor.
                let up = i64::from(rest > half) | (i64::from(rest == half) & floor & 1);
                *v = fit(floor + up);
            }),
        }
    }
}

impl fmt::Display for FixedType {
    /// The C++ spelling, `ap_fixed<8,3,AP_RND,AP_SAT>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.signed { "ap_fixed" } else { "ap_ufixed" };
        let q = match self.rounding {
            Rounding::Trn => "AP_TRN",
            Rounding::Rnd => "AP_RND",
            Rounding::RndConv => "AP_RND_CONV",
        };
        let o = match self.overflow {
            Overflow::Wrap => "AP_WRAP",
            Overflow::Sat => "AP_SAT",
        };
        write!(f, "{name}<{},{},{q},{o}>", self.width, self.integer)
    }
}

impl FromStr for FixedType {
    type Err = QuantError;

    /// Parses hls4ml's precision strings: `ap_fixed<W,I>`, `ap_ufixed<W,I,AP_RND>`,
    /// `ap_fixed<W,I,AP_RND_CONV,AP_SAT>`, with or without spaces. Omitted modes take the
    /// C++ defaults (`AP_TRN`, `AP_WRAP`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |detail: &str| QuantError::BadType {
            spec: s.to_owned(),
            detail: detail.to_owned(),
        };
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let (signed, rest) = if let Some(r) = compact.strip_prefix("ap_fixed<") {
            (true, r)
        } else if let Some(r) = compact.strip_prefix("ap_ufixed<") {
            (false, r)
        } else {
            return Err(bad("expected ap_fixed<W,I[,Q[,O]]> or ap_ufixed<...>"));
        };
        let args: Vec<&str> = rest
            .strip_suffix('>')
            .ok_or_else(|| bad("missing closing '>'"))?
            .split(',')
            .collect();
        if !(2..=4).contains(&args.len()) {
            return Err(bad("expected 2 to 4 arguments: W, I, rounding, overflow"));
        }
        let width = args[0]
            .parse()
            .map_err(|_| bad("W is not a non-negative integer"))?;
        let integer = args[1].parse().map_err(|_| bad("I is not an integer"))?;
        let rounding = match args.get(2).copied() {
            None | Some("AP_TRN") => Rounding::Trn,
            Some("AP_RND") => Rounding::Rnd,
            Some("AP_RND_CONV") => Rounding::RndConv,
            Some(_) => return Err(bad("rounding must be AP_TRN, AP_RND or AP_RND_CONV")),
        };
        let overflow = match args.get(3).copied() {
            None | Some("AP_WRAP") => Overflow::Wrap,
            Some("AP_SAT") => Overflow::Sat,
            Some(_) => return Err(bad("overflow must be AP_WRAP or AP_SAT")),
        };
        Self::new(width, integer, signed, rounding, overflow).map_err(|e| match e {
            QuantError::BadType { detail, .. } => bad(&detail),
            other => other,
        })
    }
}

impl Serialize for FixedType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FixedType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> FixedType {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_lsb_follow_w_and_i() {
        let a = t("ap_fixed<8,3>");
        assert_eq!((a.min_raw(), a.max_raw(), a.lsb()), (-128, 127, 1.0 / 32.0));
        let u = t("ap_ufixed<6,0>");
        assert_eq!((u.min_raw(), u.max_raw(), u.lsb()), (0, 63, 1.0 / 64.0));
        assert_eq!(
            t("ap_fixed<16,6,AP_RND,AP_SAT>").to_string(),
            "ap_fixed<16,6,AP_RND,AP_SAT>"
        );
    }

    #[test]
    fn modes_round_and_overflow_as_the_cpp_types() {
        // 4 fraction bits: 0.03125 is half an lsb.
        let half = 0.03125;
        assert_eq!(t("ap_fixed<8,4,AP_TRN>").quantize(-half), -0.0625);
        assert_eq!(t("ap_fixed<8,4,AP_RND>").quantize(-half), 0.0);
        assert_eq!(t("ap_fixed<8,4,AP_RND>").quantize(half), 0.0625);
        assert_eq!(t("ap_fixed<8,4,AP_RND_CONV>").quantize(half), 0.0);
        assert_eq!(t("ap_fixed<8,4,AP_RND_CONV>").quantize(3.0 * half), 0.125);
        assert_eq!(
            t("ap_fixed<8,4,AP_TRN,AP_SAT>").quantize(100.0),
            127.0 / 16.0
        );
        assert_eq!(t("ap_fixed<8,4,AP_TRN,AP_WRAP>").quantize(8.0), -8.0);
        assert_eq!(t("ap_ufixed<8,4,AP_TRN,AP_SAT>").quantize(-1.0), 0.0);
        assert_eq!(t("ap_ufixed<8,4,AP_TRN,AP_WRAP>").quantize(-1.0), 15.0);
    }

    #[test]
    fn requantize_is_the_integer_form_of_quantize() {
        // Every rounding and overflow mode, signed and not, from more fraction bits
        // (a right shift) and from fewer (a left shift); one value and a slice agree.
        for spec in [
            "ap_fixed<6,2,AP_RND>",
            "ap_fixed<6,2,AP_RND_CONV,AP_SAT>",
            "ap_fixed<6,2,AP_RND_CONV,AP_WRAP>",
            "ap_fixed<7,3,AP_TRN,AP_SAT>",
            "ap_ufixed<5,1>",
            "ap_ufixed<5,1,AP_RND,AP_SAT>",
            "ap_ufixed<6,3,AP_RND_CONV,AP_WRAP>",
        ] {
            let ty = t(spec);
            for from in [6, 2] {
                let raws: Vec<i64> = (-300i64..300).collect();
                let mut all = raws.clone();
                Cast::new(from, ty).apply_all(&mut all, i64::MIN);
                // The portable loops give what the AVX2 build (taken where the CPU has it) gives.
                let mut portable = raws.clone();
                Cast::new(from, ty).apply_all_portable(&mut portable, i64::MIN);
                assert_eq!(portable, all, "{spec}");
                for (&raw, &slice) in raws.iter().zip(&all) {
                    let x = raw as f64 / f64::from(1 << from);
                    assert_eq!(ty.requantize(raw, from), ty.quantize_raw(x), "{spec} {x}");
                    assert_eq!(slice, ty.quantize_raw(x), "{spec} {x}");
                }
            }
        }
    }

    #[test]
    fn unrepresentable_types_are_rejected_with_the_reason() {
        for (spec, why) in [
            ("ap_fixed<0,0>", "W = 0"),
            ("ap_fixed<33,8>", "32-bit"),
            ("ap_fixed<8,9>", "I = 9 > W = 8"),
            ("ap_fixed<8,3,AP_RND_ZERO>", "rounding must be"),
            ("fixed<8,3>", "expected ap_fixed"),
        ] {
            let err = spec.parse::<FixedType>().unwrap_err().to_string();
            assert!(err.contains(spec) && err.contains(why), "{spec}: {err}");
        }
    }
}
