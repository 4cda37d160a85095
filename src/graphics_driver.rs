//! Facts about graphics drivers that change how fast the tool runs.

/// The first Mesa release whose lavapipe runs this tool's kernels at full speed (Mesa 22.3's
/// lavapipe takes about 3× as long per iteration as Mesa 25's on the same CPU).
pub const FAST_LAVAPIPE_MESA: (u32, u32) = (24, 0);

/// The Mesa version (major, minor) in a driver description such as
/// `llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)`.
pub fn mesa_version(driver: &str) -> Option<(u32, u32)> {
    let (_, rest) = driver.split_once("Mesa ")?;
    let version = rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A warning when the adapter is Mesa's lavapipe (software Vulkan, "llvmpipe") older than
/// [`FAST_LAVAPIPE_MESA`]; `None` for any other adapter.
pub fn old_lavapipe_warning(adapter_name: &str, driver: &str) -> Option<String> {
    if !(adapter_name.contains("llvmpipe") || driver.contains("llvmpipe")) {
        return None;
    }
    let (major, minor) = mesa_version(driver)?;
    ((major, minor) < FAST_LAVAPIPE_MESA).then(|| {
        format!(
            "{adapter_name} is lavapipe from Mesa {major}.{minor}, about 3x slower than with Mesa {}.{} or newer; \
             on Debian 12 install `mesa-vulkan-drivers` from bookworm-backports (see the README's Install section)",
            FAST_LAVAPIPE_MESA.0, FAST_LAVAPIPE_MESA.1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesa_version_is_read_from_driver_descriptions() {
        assert_eq!(mesa_version("llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)"), Some((25, 0)));
        assert_eq!(mesa_version("llvmpipe Mesa 22.3.6 (LLVM 15.0.6)"), Some((22, 3)));
        assert_eq!(mesa_version("Mesa 24.1.0-devel (git-abc)"), Some((24, 1)));
        assert_eq!(mesa_version("NVIDIA 550.54.14"), None);
        assert_eq!(mesa_version("Mesa unknown"), None);
    }

    #[test]
    fn only_lavapipe_older_than_mesa_24_is_warned_about() {
        let lavapipe = "llvmpipe (LLVM 15.0.6, 256 bits)";
        let warning = old_lavapipe_warning(lavapipe, "llvmpipe Mesa 22.3.6 (LLVM 15.0.6)").expect("a warning");
        assert!(warning.contains("Mesa 22.3") && warning.contains("bookworm-backports"), "{warning}");
        assert_eq!(old_lavapipe_warning(lavapipe, "llvmpipe Mesa 23.3.9"), Some(warning.replace("22.3", "23.3")));
        assert_eq!(old_lavapipe_warning(lavapipe, "llvmpipe Mesa 24.0.5"), None);
        assert_eq!(old_lavapipe_warning(lavapipe, "llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)"), None);
        assert_eq!(old_lavapipe_warning("AMD Radeon RX 7600 (RADV NAVI33)", "radv Mesa 22.3.6"), None);
        assert_eq!(old_lavapipe_warning(lavapipe, "llvmpipe (no version)"), None);
    }
}
