//! The seed walk-through (`examples/walkthrough.sh`) as a test: the script itself, run on the
//! binaries of this build, checks every step against the seed document and exits non-zero at
//! the first difference.

use std::path::Path;
use std::process::Command;

#[test]
fn the_seed_walkthrough_behaves_as_the_seed_says() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/walkthrough.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("IPAMCTL", ipam_test_support::binary("ipamctl", "ipamctl"))
        .env("IPAM_CNI", env!("CARGO_BIN_EXE_ipam-cni"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The seed's outcomes, as the script printed them.
    for expect in [
        "test-ippool   4         10.6.0.0/16   3       2          0           1\n",
        "test-app-67dd9f645-dv8xz   Running             10.6.168.133\n",
        "test-app-67dd9f645-lpjgs   ContainerCreating   <none>\n",
        "reservedip/test-reservedip configured\n",
        "test-ippool   4         10.6.0.0/16   3       3          1           0\n",
        "reservedip/test-reservedip deleted\n",
        "walkthrough: OK",
    ] {
        assert!(stdout.contains(expect), "missing {expect:?} in:\n{stdout}");
    }
}
