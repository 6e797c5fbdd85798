//! The unsafe-path rule stated independently of [`super::path`], for the property test and
//! the fuzz target (which cannot see `cfg(test)` code). Never called by the filter.

fn path_part(v: &[u8]) -> &[u8] {
    let end = v
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(v.len());
    v.get(..end).unwrap_or(v)
}

/// Whether `output` (a stripped `input`) has more non-final empty path segments than `input`,
/// or any `.`/`..` segment (split on `/`, `\`, `%2F`, `%5C`; `%2e` decoded; each segment up to
/// its first `;`) although its path part changed.
pub fn creates_dot_or_empty(input: &[u8], output: &[u8]) -> bool {
    let (pi, po) = (path_part(input), path_part(output));
    if pi == po {
        return false;
    }
    let empties = |p: &[u8]| {
        let segs: Vec<&[u8]> = p.split(|&b| b == b'/').collect();
        segs.iter()
            .take(segs.len().saturating_sub(1))
            .filter(|s| s.is_empty())
            .count()
    };
    let norm = String::from_utf8_lossy(po)
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%5c", "/")
        .replace("%5C", "/")
        .replace('\\', "/")
        .replace("%2e", ".")
        .replace("%2E", ".");
    let dots = norm.split('/').any(|seg| {
        let base = seg.split(';').next().unwrap_or("");
        base == "." || base == ".."
    });
    dots || empties(po) > empties(pi)
}
