//! The key every service `up` runs signs or verifies patches and checks
//! with. Without one, any local process could post a patch to a service's
//! `/services` (the portal's, say) naming itself as the grading service.
//! `ROLLCALL_SIGNING_KEY` wins when set (the children inherit it); else the
//! key is `signing-key` in the data directory, made on first start (mode
//! 0600) and kept. Classic clients ignore the signature headers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rollcall_http::signing::SigningKey;

/// The key's file in `data_dir`.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("signing-key")
}

/// The key to hand every child (`None`: they inherit
/// `ROLLCALL_SIGNING_KEY`), and what to say about it.
pub fn key(data_dir: &Path) -> anyhow::Result<(Option<Arc<str>>, String)> {
    if std::env::var_os("ROLLCALL_SIGNING_KEY").is_some() {
        return Ok((
            None,
            "patches and checks signed with ROLLCALL_SIGNING_KEY".to_owned(),
        ));
    }
    let path = key_file(data_dir);
    let shown = path.display();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim().to_owned();
            SigningKey::parse(&text)
                .map_err(|e| anyhow::anyhow!("{shown}: {e}; remove it to have a new one made"))?;
            Ok((
                Some(text.into()),
                format!("patches and checks signed with the key in {shown}"),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = SigningKey::generate()
                .map_err(|_| anyhow::anyhow!("cannot make a signing key: no randomness"))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&path)
                .with_context(|| format!("cannot create {shown}"))?;
            writeln!(file, "{text}").with_context(|| format!("cannot write {shown}"))?;
            Ok((
                Some(text.into()),
                format!("patches and checks signed with a new key, kept in {shown}"),
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {shown}")),
    }
}
