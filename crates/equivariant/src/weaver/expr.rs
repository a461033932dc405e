//! The formulas of a weaver-core data config's `new_variables` (`np.log(part_pt/jet_pt)`):
//! numpy / awkward expressions over per-particle arrays and per-jet scalars. noether
//! parses the subset these configs use (arithmetic, `**`, numbers, names, and the
//! element-wise functions below), and names anything else in its error.

use std::fmt;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Number(f64),
    /// A variable (`part_px`, `jet_pt`).
    Name(String),
    /// `-x`.
    Neg(Box<Expr>),
    /// `a op b`.
    Binary(Op, Box<Expr>, Box<Expr>),
    /// `f(args)`.
    Call(Function, Vec<Expr>),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `**`.
    Pow,
}

/// The functions a formula may call, by their numpy / awkward names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `np.log`.
    Log,
    /// `np.log1p`.
    Log1p,
    /// `np.exp`.
    Exp,
    /// `np.sqrt`.
    Sqrt,
    /// `np.abs`.
    Abs,
    /// `np.sign`.
    Sign,
    /// `np.sin`.
    Sin,
    /// `np.cos`.
    Cos,
    /// `np.tanh`.
    Tanh,
    /// `np.arcsinh`.
    Arcsinh,
    /// `np.hypot(a, b)`.
    Hypot,
    /// `np.arctan2(y, x)`.
    Arctan2,
    /// `np.minimum(a, b)`.
    Minimum,
    /// `np.maximum(a, b)`.
    Maximum,
    /// `ak.ones_like(x)`.
    OnesLike,
    /// `ak.zeros_like(x)`.
    ZerosLike,
}

impl Function {
    fn from_name(name: &str) -> Option<(Self, usize)> {
        let bare = name
            .strip_prefix("np.")
            .or_else(|| name.strip_prefix("numpy."))
            .or_else(|| name.strip_prefix("ak."))
            .or_else(|| name.strip_prefix("awkward."))?;
        Some(match bare {
            "log" => (Self::Log, 1),
            "log1p" => (Self::Log1p, 1),
            "exp" => (Self::Exp, 1),
            "sqrt" => (Self::Sqrt, 1),
            "abs" => (Self::Abs, 1),
            "sign" => (Self::Sign, 1),
            "sin" => (Self::Sin, 1),
            "cos" => (Self::Cos, 1),
            "tanh" => (Self::Tanh, 1),
            "arcsinh" => (Self::Arcsinh, 1),
            "hypot" => (Self::Hypot, 2),
            "arctan2" => (Self::Arctan2, 2),
            "minimum" => (Self::Minimum, 2),
            "maximum" => (Self::Maximum, 2),
            "ones_like" => (Self::OnesLike, 1),
            "zeros_like" => (Self::ZerosLike, 1),
            _ => return None,
        })
    }

    fn apply1(self, x: f64) -> f64 {
        match self {
            Self::Log => x.ln(),
            Self::Log1p => x.ln_1p(),
            Self::Exp => x.exp(),
            Self::Sqrt => x.sqrt(),
            Self::Abs => x.abs(),
            Self::Sign => {
                if x == 0.0 {
                    0.0
                } else {
                    x.signum()
                }
            }
            Self::Sin => x.sin(),
            Self::Cos => x.cos(),
            Self::Tanh => x.tanh(),
            Self::Arcsinh => x.asinh(),
            Self::OnesLike => 1.0,
            Self::ZerosLike => 0.0,
            Self::Hypot | Self::Arctan2 | Self::Minimum | Self::Maximum => f64::NAN,
        }
    }

    fn apply2(self, a: f64, b: f64) -> f64 {
        match self {
            Self::Hypot => a.hypot(b),
            Self::Arctan2 => a.atan2(b),
            Self::Minimum => a.min(b),
            Self::Maximum => a.max(b),
            _ => f64::NAN,
        }
    }
}

/// Why a formula did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `text`.
///
/// # Errors
/// [`ParseError`] naming the unknown function or the unexpected character.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.sum()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(ParseError(format!(
            "unexpected '{t}' after a complete expression"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(x) => write!(f, "{x}"),
            Self::Name(n) => f.write_str(n),
            Self::Symbol(s) => f.write_str(s),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || matches!(chars[i], 'e' | 'E')
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let value = literal
                .parse()
                .map_err(|_| ParseError(format!("'{literal}' is not a number")))?;
            tokens.push(Token::Number(value));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else {
            let symbol = match (c, chars.get(i + 1)) {
                ('*', Some('*')) => "**",
                ('+', _) => "+",
                ('-', _) => "-",
                ('*', _) => "*",
                ('/', _) => "/",
                ('(', _) => "(",
                (')', _) => ")",
                (',', _) => ",",
                _ => return Err(ParseError(format!("unexpected character '{c}'"))),
            };
            i += symbol.len();
            tokens.push(Token::Symbol(symbol));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, symbol: &'static str) -> bool {
        let found = self.peek() == Some(&Token::Symbol(symbol));
        if found {
            self.at += 1;
        }
        found
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                Op::Add
            } else if self.eat("-") {
                Op::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                Op::Mul
            } else if self.eat("/") {
                Op::Div
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat("+") {
            return self.unary();
        }
        let base = self.atom()?;
        if self.eat("**") {
            // Right-associative and binding tighter than unary minus on its left, as in
            // Python (`-x**2` is `-(x**2)`).
            return Ok(Expr::Binary(
                Op::Pow,
                Box::new(base),
                Box::new(self.unary()?),
            ));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(ParseError("the formula ends too early".into()));
        };
        self.at += 1;
        match token {
            Token::Number(x) => Ok(Expr::Number(x)),
            Token::Symbol("(") => {
                let inner = self.sum()?;
                if self.eat(")") {
                    Ok(inner)
                } else {
                    Err(ParseError("a '(' without its ')'".into()))
                }
            }
            Token::Name(name) if self.eat("(") => self.call(&name),
            Token::Name(name) => Ok(Expr::Name(name)),
            Token::Symbol(s) => Err(ParseError(format!("unexpected '{s}'"))),
        }
    }

    fn call(&mut self, name: &str) -> Result<Expr, ParseError> {
        let Some((function, arity)) = Function::from_name(name) else {
            return Err(ParseError(format!(
                "the function '{name}' is not one noether evaluates"
            )));
        };
        let mut args = vec![self.sum()?];
        while self.eat(",") {
            args.push(self.sum()?);
        }
        if !self.eat(")") {
            return Err(ParseError(format!("'{name}(' without its ')'")));
        }
        if args.len() != arity {
            return Err(ParseError(format!(
                "'{name}' takes {arity} argument(s), not {}",
                args.len()
            )));
        }
        Ok(Expr::Call(function, args))
    }
}

/// A value during evaluation: one number per particle, or one per jet (broadcast).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Per particle.
    Particles(Vec<f64>),
    /// Per jet.
    Jet(f64),
}

impl Column {
    fn map(self, f: impl Fn(f64) -> f64) -> Self {
        match self {
            Self::Particles(v) => Self::Particles(v.into_iter().map(f).collect()),
            Self::Jet(x) => Self::Jet(f(x)),
        }
    }

    fn zip(self, other: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        match (self, other) {
            (Self::Jet(a), Self::Jet(b)) => Self::Jet(f(a, b)),
            (Self::Particles(a), Self::Jet(b)) => {
                Self::Particles(a.into_iter().map(|a| f(a, b)).collect())
            }
            (Self::Jet(a), Self::Particles(b)) => {
                Self::Particles(b.into_iter().map(|b| f(a, b)).collect())
            }
            (Self::Particles(a), Self::Particles(b)) => {
                Self::Particles(a.into_iter().zip(b).map(|(a, b)| f(a, b)).collect())
            }
        }
    }
}

impl Expr {
    /// The variable names it reads.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Number(_) => Vec::new(),
            Self::Name(n) => vec![n.as_str()],
            Self::Neg(x) => x.names(),
            Self::Binary(_, a, b) => a.names().into_iter().chain(b.names()).collect(),
            Self::Call(_, args) => args.iter().flat_map(Expr::names).collect(),
        }
    }

    /// Evaluates it with `lookup` giving each variable's column (names are checked
    /// before evaluation, so a missing one is a caller's bug and gives NaN).
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<Column>) -> Column {
        match self {
            Self::Number(x) => Column::Jet(*x),
            Self::Name(n) => lookup(n).unwrap_or(Column::Jet(f64::NAN)),
            Self::Neg(x) => x.eval(lookup).map(|v| -v),
            Self::Binary(op, a, b) => {
                let f = match op {
                    Op::Add => |a: f64, b: f64| a + b,
                    Op::Sub => |a: f64, b: f64| a - b,
                    Op::Mul => |a: f64, b: f64| a * b,
                    Op::Div => |a: f64, b: f64| a / b,
                    Op::Pow => f64::powf,
                };
                a.eval(lookup).zip(b.eval(lookup), f)
            }
            Self::Call(function, args) => match &args[..] {
                [x] => x.eval(lookup).map(|v| function.apply1(v)),
                [a, b] => a
                    .eval(lookup)
                    .zip(b.eval(lookup), |a, b| function.apply2(a, b)),
                _ => Column::Jet(f64::NAN),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Column {
        let lookup = |name: &str| match name {
            "part_px" => Some(Column::Particles(vec![3.0, -1.0])),
            "part_py" => Some(Column::Particles(vec![4.0, 0.0])),
            "jet_pt" => Some(Column::Jet(10.0)),
            _ => None,
        };
        parse(text).unwrap().eval(&lookup)
    }

    #[test]
    fn formulas_of_the_jetclass_configs_evaluate() {
        assert_eq!(
            eval("np.hypot(part_px, part_py)"),
            Column::Particles(vec![5.0, 1.0])
        );
        assert_eq!(
            eval("np.log(np.hypot(part_px, part_py)/jet_pt)"),
            Column::Particles(vec![0.5f64.ln(), 0.1f64.ln()])
        );
        assert_eq!(
            eval("ak.ones_like(part_px)"),
            Column::Particles(vec![1.0, 1.0])
        );
        assert_eq!(eval("1-jet_pt"), Column::Jet(-9.0));
    }

    #[test]
    fn precedence_follows_python() {
        assert_eq!(eval("-2**2"), Column::Jet(-4.0));
        assert_eq!(eval("2**3**2"), Column::Jet(512.0));
        assert_eq!(eval("1 + 2 * 3 - 4 / 2"), Column::Jet(5.0));
        assert_eq!(eval("(1 + 2) * 3e-1"), Column::Jet(0.8999999999999999));
    }

    #[test]
    fn unknown_functions_and_junk_are_named() {
        let err = parse("np.arccosh(part_px)").unwrap_err();
        assert!(err.0.contains("np.arccosh"), "{err}");
        assert!(parse("part_px[0]").unwrap_err().0.contains('['));
        assert!(parse("np.log(part_px").is_err());
        assert!(parse("np.hypot(part_px)")
            .unwrap_err()
            .0
            .contains("2 argument"));
        assert_eq!(
            parse("np.log(part_pt / jet_pt)").unwrap().names(),
            ["part_pt", "jet_pt"]
        );
    }
}
