//! Whatever a runtime writes on the plugin's stdin, reading the configuration never panics,
//! and a refusal of the configuration is always code 1 (version), 6 (decoding) or 7 (value).
#![no_main]

use ipam_cni::cni::config::{
    decode_stdin, log_config, prev_result_addresses, valid_attachments, version_of, NetConf,
    Plan,
};
use ipam_cni::cni::env::CniArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let check = |e: &ipam_cni::cni::error::CniError| {
        let code = e.code().number();
        assert!([1, 6, 7].contains(&code), "code {code} for a configuration: {}", e.msg());
    };
    let conf = match decode_stdin(data) {
        Ok(c) => c,
        Err(e) => return check(&e),
    };
    let version = match version_of(&conf) {
        Ok(v) => v,
        Err(e) => return check(&e),
    };
    let net = match NetConf::parse(&conf, version) {
        Ok(n) => n,
        Err(e) => return check(&e),
    };
    if let Err(e) = Plan::parse(&conf, &net, &CniArgs::default()) {
        check(&e);
    }
    if let Err(e) = log_config(&conf) {
        check(&e);
    }
    if let Err(e) = prev_result_addresses(&conf) {
        check(&e);
    }
    if let Err(e) = valid_attachments(&conf) {
        check(&e);
    }
});
