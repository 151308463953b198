//! Command-line flags, the same way for `benches/compare` and
//! `benches/loopback.rs`, which include this file: `--flag VALUE` or
//! `--flag=VALUE`, `-h`/`--help`, and numbers that may contain `_`.

/// One command-line argument.
pub(crate) enum Arg {
    /// `-h` or `--help`.
    Help,
    /// A flag, with the value it carried after `=` if any.
    Flag(String, Option<String>),
}

/// The arguments after the program name.
pub(crate) struct Args<I> {
    args: I,
}

impl<I: Iterator<Item = String>> Args<I> {
    pub(crate) fn new(args: impl IntoIterator<Item = String, IntoIter = I>) -> Args<I> {
        Args {
            args: args.into_iter(),
        }
    }

    /// The next argument, `None` after the last.
    pub(crate) fn next_arg(&mut self) -> Option<Arg> {
        let arg = self.args.next()?;
        if arg == "-h" || arg == "--help" {
            return Some(Arg::Help);
        }
        Some(match arg.split_once('=') {
            Some((flag, value)) => Arg::Flag(flag.to_owned(), Some(value.to_owned())),
            None => Arg::Flag(arg, None),
        })
    }

    /// The value of `flag`: the one it carried, or the next argument.
    pub(crate) fn value(&mut self, flag: &str, inline: &Option<String>) -> Result<String, String> {
        inline
            .clone()
            .or_else(|| self.args.next())
            .ok_or_else(|| format!("{flag} needs a value"))
    }
}

/// Parses a decimal number of at least `min`, allowing `_` separators.
pub(crate) fn number<T>(flag: &str, text: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let n: T = text
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))?;
    if n < min {
        return Err(format!("{flag}: must be at least {min}"));
    }
    Ok(n)
}
