//! Where rollcall keeps its files by default.
//!
//! `$ROLLCALL_DATA_DIR` if set (clap reads it), else `$XDG_DATA_HOME/rollcall`,
//! else `$HOME/.local/share/rollcall`. Never the working directory: a service
//! started from another folder must find the same data.

use std::path::PathBuf;

/// The default data directory, from the environment's `XDG_DATA_HOME` and
/// `HOME`.
pub fn default_data_dir() -> PathBuf {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// The rule behind [`default_data_dir`], given the two variables.
pub fn data_dir_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    match (xdg_data_home, home) {
        (Some(xdg), _) if !xdg.is_empty() => PathBuf::from(xdg).join("rollcall"),
        (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".local/share/rollcall"),
        _ => PathBuf::from("/tmp/rollcall"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_xdg_then_home() {
        assert_eq!(
            data_dir_from(Some("/x".into()), Some("/h".into())),
            PathBuf::from("/x/rollcall")
        );
        assert_eq!(
            data_dir_from(None, Some("/h".into())),
            PathBuf::from("/h/.local/share/rollcall")
        );
        assert_eq!(
            data_dir_from(Some("".into()), None),
            PathBuf::from("/tmp/rollcall")
        );
    }
}
