//! The installation's Ed25519 key, which signs checkpoints and archives.
//!
//! The private key is a file of its own (64 hex characters, the 32-byte
//! seed), mode 0600 in a 0700 folder, never in the database: whoever can
//! rewrite the database still cannot sign a checkpoint for the rewritten
//! chain. The public key is beside it as `<key>.pub` (64 hex characters), to
//! hand to auditors (`clerk audit pubkey`).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// `<key>.pub`.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Creates a new key at `path` (refuses to replace one unless `force`);
/// returns the public key in hex.
pub fn keygen(path: &Path, force: bool) -> anyhow::Result<String> {
    if path.exists() && !force {
        anyhow::bail!(
            "a key already exists at {}; checkpoints signed with it could no longer be checked \
             against a new one (use --force to replace it anyway)",
            path.display()
        );
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the permissions of {}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // Written to a 0600 temporary file first, then renamed: no moment when a
    // half-written or readable key exists.
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        writeln!(f, "{}", hex::encode(seed))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    let public = hex::encode(key.verifying_key().to_bytes());
    crate::fsutil::write_atomic(&pub_path(path), format!("{public}\n").as_bytes())?;
    Ok(public)
}

/// The signing key at `path`, or `None` if there is none. A key readable by
/// group or others is refused.
pub fn load_signing(path: &Path) -> anyhow::Result<Option<SigningKey>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "refusing to use the audit key {}: it is readable by group or others (mode {mode:o}); \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| {
            format!(
                "{} is not an audit key (expected 64 hex characters)",
                path.display()
            )
        })?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

/// A public key from 64 hex characters.
pub fn parse_public(hex_text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("not an Ed25519 public key (expected 64 hex characters)")?;
    VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")
}

/// A public key given on the command line: 64 hex characters, or a file
/// holding them.
pub fn public_from_arg(arg: &str) -> anyhow::Result<VerifyingKey> {
    if let Ok(k) = parse_public(arg) {
        return Ok(k);
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!("--pubkey {arg}: neither 64 hex characters nor a readable file")
    })?;
    parse_public(&text).with_context(|| format!("--pubkey {arg}"))
}

/// The public key of the installation (`<key>.pub`), if there is one.
pub fn load_public(key: &Path) -> anyhow::Result<Option<VerifyingKey>> {
    let p = pub_path(key);
    match std::fs::read_to_string(&p) {
        Ok(t) => parse_public(&t)
            .map(Some)
            .with_context(|| p.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Signs `message`; the signature in hex.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    hex::encode(key.sign(message).to_bytes())
}

/// True if `sig_hex` is `key`'s signature of `message`.
pub fn verify(key: &VerifyingKey, message: &[u8], sig_hex: &str) -> bool {
    let Some(bytes) = hex::decode(sig_hex)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(message, &Signature::from_bytes(&bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_sign_verify_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let public = keygen(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            keygen(&path, false)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        let key = load_signing(&path).unwrap().unwrap();
        let vk = load_public(&path).unwrap().unwrap();
        assert_eq!(hex::encode(vk.to_bytes()), public);
        let sig = sign(&key, b"head");
        assert!(verify(&vk, b"head", &sig));
        assert!(!verify(&vk, b"head2", &sig));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_signing(&path)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }
}
