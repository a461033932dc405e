//! Box bounds on a form's parameters (as scipy's L-BFGS-B takes them), solved exactly by
//! enumerating the faces of the box: every bounded parameter is either free or held at
//! one of its bounds, the free ones are minimised without constraints (L-BFGS), and the
//! best minimum that lies inside the box wins. The constrained optimum lies in the
//! relative interior of exactly one face, where it is an unconstrained minimum of the
//! free parameters, so the enumeration finds it whenever the multi-start finds that
//! face's minimum; and the face it came from says which parameters ran into a bound.
//! The count of faces is 3^k for k doubly bounded parameters: forms have at most six.

use std::str::FromStr;

use crate::error::{Result, ScalingError};
use crate::forms::ScalingLaw;

/// A bound on one natural parameter of a form (`E`, `A`, `alpha`, ...), as a user writes
/// it: `NAME=LO:HI`, either side may be empty (`B=:1000`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The natural parameter's name.
    pub name: String,
    /// Lower bound (none: unbounded below).
    pub lo: Option<f64>,
    /// Upper bound (none: unbounded above).
    pub hi: Option<f64>,
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let form = || format!("bound {text:?} is not NAME=LO:HI (e.g. E=0.01:1 or B=:1000)");
        let (name, range) = text.split_once('=').ok_or_else(form)?;
        let (lo, hi) = range.split_once(':').ok_or_else(form)?;
        let side = |s: &str| -> std::result::Result<Option<f64>, String> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(format!("bound {text:?}: {s:?} is not a finite number")),
            }
        };
        let bound = Self {
            name: name.trim().to_owned(),
            lo: side(lo)?,
            hi: side(hi)?,
        };
        if bound.name.is_empty() {
            return Err(form());
        }
        if let (Some(lo), Some(hi)) = (bound.lo, bound.hi) {
            if lo > hi {
                return Err(format!("bound {text:?}: the lower bound exceeds the upper"));
            }
        }
        Ok(bound)
    }
}

/// A bound in the fit parameterisation: fit parameter `index` in `[lo, hi]` (none: open).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParamBound {
    /// The fit parameter.
    pub index: usize,
    /// Lower bound.
    pub lo: Option<f64>,
    /// Upper bound.
    pub hi: Option<f64>,
}

impl ParamBound {
    /// Whether `value` lies inside (with a tolerance of 1e-10, relative above 1).
    fn admits(&self, value: f64) -> bool {
        let tol = 1e-10 * value.abs().max(1.0);
        self.lo.is_none_or(|lo| value >= lo - tol) && self.hi.is_none_or(|hi| value <= hi + tol)
    }

    fn clamp(&self, value: f64) -> f64 {
        let value = self.lo.map_or(value, |lo| value.max(lo));
        self.hi.map_or(value, |hi| value.min(hi))
    }
}

/// Turns bounds on natural parameters into bounds on `law`'s fit parameters (a log
/// parameter's bounds are logged, so a natural lower bound must then be positive).
///
/// # Errors
/// [`ScalingError::InvalidArgument`] naming a parameter the form does not have (listing
/// the ones it has), a bound given twice, or a non-positive bound on a log parameter.
pub fn resolve_bounds(law: &dyn ScalingLaw, bounds: &[Bound]) -> Result<Vec<ParamBound>> {
    let params = law.natural_params();
    let invalid = |detail: String| ScalingError::InvalidArgument {
        name: "bound",
        detail,
    };
    let mut out: Vec<ParamBound> = Vec::new();
    for bound in bounds {
        let Some(param) = params.iter().find(|p| p.name == bound.name) else {
            let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            return Err(invalid(if names.is_empty() {
                format!("the {} form does not take bounds", law.name())
            } else {
                format!(
                    "the {} form has no parameter '{}' (its parameters: {})",
                    law.name(),
                    bound.name,
                    names.join(", ")
                )
            }));
        };
        if out.iter().any(|b| b.index == param.index) {
            return Err(invalid(format!("'{}' is bounded twice", bound.name)));
        }
        let to_fit = |v: Option<f64>, side: &str| -> Result<Option<f64>> {
            match v {
                Some(v) if param.log && v <= 0.0 => Err(invalid(format!(
                    "the {side} bound {v} of '{}' must be positive (the parameter is positive)",
                    bound.name
                ))),
                Some(v) if param.log => Ok(Some(v.ln())),
                other => Ok(other),
            }
        };
        out.push(ParamBound {
            index: param.index,
            lo: to_fit(bound.lo, "lower")?,
            hi: to_fit(bound.hi, "upper")?,
        });
    }
    Ok(out)
}

/// One face of the box: the fit parameters held at a bound, with their values.
pub(crate) type Face = Vec<(usize, f64)>;

/// Every face of the box, the interior (nothing held) first.
pub(crate) fn faces(bounds: &[ParamBound]) -> Vec<Face> {
    bounds.iter().fold(vec![Vec::new()], |acc, b| {
        let choices: Vec<Option<f64>> = [None, b.lo, b.hi]
            .into_iter()
            .enumerate()
            .filter(|(k, v)| *k == 0 || v.is_some())
            .map(|(_, v)| v)
            .collect();
        acc.iter()
            .flat_map(|face| {
                choices.iter().map(move |choice| {
                    let mut f = face.clone();
                    if let Some(v) = choice {
                        f.push((b.index, *v));
                    }
                    f
                })
            })
            .collect()
    })
}

/// Whether every bounded parameter of `theta` lies inside its bounds.
pub(crate) fn admits(bounds: &[ParamBound], theta: &[f64]) -> bool {
    bounds.iter().all(|b| b.admits(theta[b.index]))
}

/// `theta` moved into the box.
pub(crate) fn clamp(bounds: &[ParamBound], theta: &[f64]) -> Vec<f64> {
    let mut out = theta.to_vec();
    for b in bounds {
        out[b.index] = b.clamp(out[b.index]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_with_open_sides_and_reject_nonsense() {
        let b: Bound = "B=:1000".parse().unwrap();
        assert_eq!((b.name.as_str(), b.lo, b.hi), ("B", None, Some(1000.0)));
        let b: Bound = "alpha=0.01:2".parse().unwrap();
        assert_eq!((b.lo, b.hi), (Some(0.01), Some(2.0)));
        for bad in ["E", "E=1", "=0:1", "E=a:1", "E=2:1", "E=nan:1", "E=0:inf"] {
            assert!(bad.parse::<Bound>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn faces_enumerate_free_lower_and_upper_per_parameter() {
        let bounds = [
            ParamBound {
                index: 0,
                lo: Some(0.0),
                hi: Some(1.0),
            },
            ParamBound {
                index: 2,
                lo: None,
                hi: Some(5.0),
            },
        ];
        let f = faces(&bounds);
        assert_eq!(f.len(), 6);
        assert!(f[0].is_empty());
        assert!(f.contains(&vec![(0, 1.0), (2, 5.0)]));
        assert!(f.contains(&vec![(2, 5.0)]));
    }
}
