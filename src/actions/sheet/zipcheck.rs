//! Reads a zip file's central directory (xlsx, xlsb and ods are zip files) and
//! refuses one whose parts declare more decompressed bytes than allowed —
//! before calamine inflates anything. A 1 MB xlsx can declare a 1 GiB shared
//! string; decoding it first and failing later costs gigabytes of memory.
//!
//! Limitation: a part that lies about its size (declares little, inflates to
//! more) is not caught here; the streaming limits on rows and cells still apply
//! to worksheet data.

use anyhow::bail;

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

/// Every entry's declared uncompressed size must be at most `limit` bytes.
/// A zip the directory of which cannot be read is left to calamine (which
/// reports it as corrupt).
pub fn check_declared_sizes(bytes: &[u8], limit: u64, shown: &str) -> anyhow::Result<()> {
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    let from = bytes.len().saturating_sub(65_557);
    let Some(eocd) = (from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD_SIG))
    else {
        return Ok(());
    };
    let (Some(count), Some(cd_offset)) = (u16_at(bytes, eocd + 10), u32_at(bytes, eocd + 16))
    else {
        return Ok(());
    };
    let mut at = cd_offset as usize;
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CDH_SIG) {
            return Ok(());
        }
        let (Some(size), Some(name_len), Some(extra_len), Some(comment_len)) = (
            u32_at(bytes, at + 24),
            u16_at(bytes, at + 28),
            u16_at(bytes, at + 30),
            u16_at(bytes, at + 32),
        ) else {
            return Ok(());
        };
        let name_start = at + 46;
        let name = bytes
            .get(name_start..name_start + name_len as usize)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        // 0xFFFFFFFF: the real size is in a ZIP64 extra field, i.e. 4 GiB or more
        // (or a writer that always uses ZIP64: then read the extra field).
        let declared = if size == u32::MAX {
            zip64_size(bytes, name_start + name_len as usize, extra_len as usize)
                .unwrap_or(u64::MAX)
        } else {
            u64::from(size)
        };
        if declared > limit {
            bail!(
                "{shown}: its part `{name}` decompresses to {} (declared), over the limit of {} (`max_sheet_bytes`); refusing to read it — raise `max_sheet_bytes` on the step if the file is trusted",
                human(declared),
                human(limit)
            );
        }
        at = name_start + name_len as usize + extra_len as usize + comment_len as usize;
    }
    Ok(())
}

/// The uncompressed size from a ZIP64 extended-information extra field.
fn zip64_size(bytes: &[u8], start: usize, len: usize) -> Option<u64> {
    let mut at = start;
    while at + 4 <= start + len {
        let id = u16_at(bytes, at)?;
        let size = u16_at(bytes, at + 2)? as usize;
        if id == 0x0001 {
            let b = bytes.get(at + 4..at + 12)?;
            return Some(u64::from_le_bytes(b.try_into().ok()?));
        }
        at += 4 + size;
    }
    None
}

fn human(n: u64) -> String {
    if n == u64::MAX {
        "more than 4 GiB".into()
    } else if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}
