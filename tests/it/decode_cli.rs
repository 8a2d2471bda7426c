//! `opgate decode` on every recorded vector: the printed JSON carries the fields the issue fixes,
//! with the values the vector records.

use std::process::Command;

use crate::fixtures::{lower, vectors};

#[test]
fn decode_prints_what_every_vector_records() {
    let vectors = vectors();
    assert!(vectors.len() >= 41, "only {} vectors", vectors.len());
    let dir = std::env::temp_dir().join(format!("opgate-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut kernel_ops = 0;
    for (_, v) in &vectors {
        let name = v["name"].as_str().unwrap();
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, v["rpcRequest"].as_str().unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_opgate"))
            .args(["decode", "--chain-id", &v["chainId"].to_string()])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["userOpHash"], lower(&v["userOpHash"]), "{name}");
        assert_eq!(d["sender"], lower(&v["sender"]), "{name}");
        assert_eq!(d["entryPoint"]["version"], v["entryPoint"]["version"], "{name}");
        assert_eq!(d["chainId"], v["chainId"].to_string(), "{name}");
        let calls = v["calls"].as_array().unwrap();
        assert_eq!(d["calls"].as_array().unwrap().len(), calls.len(), "{name}");
        for (got, want) in d["calls"].as_array().unwrap().iter().zip(calls) {
            assert_eq!(got["target"], lower(&want["to"]), "{name}");
            assert_eq!(got["value"], want["value"], "{name}");
            assert_eq!(got["data"], lower(&want["data"]), "{name}");
        }
        if v["kernelNonce"].is_null() {
            assert!(d["kernel"].is_null(), "{name}: not a Kernel v3 op");
            continue;
        }
        kernel_ops += 1;
        let k = &d["kernel"];
        let n = &v["kernelNonce"];
        assert_eq!(k["nonce"]["mode"], n["mode"], "{name}");
        assert_eq!(k["nonce"]["validationType"], n["validationType"], "{name}");
        assert_eq!(k["nonce"]["sequence"], n["sequence"], "{name}");
        assert_eq!(
            k["nonce"]["lane"],
            u16::from_str_radix(n["nonceKey"].as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap()
                .to_string()
        );
        if n["validationType"] == "permission" {
            assert_eq!(k["nonce"]["permissionId"], lower(&n["permissionId"]), "{name}");
        }
        let want_type = match v["callType"].as_str().unwrap() {
            "call" => "single",
            other => other,
        };
        assert_eq!(k["callType"], want_type, "{name}");
        if n["mode"] == "enable" {
            let p = &k["permission"];
            let s = &v["session"];
            assert_eq!(p["signer"]["type"], "ecdsa", "{name}");
            assert_eq!(p["signer"]["address"], lower(&s["sessionKeyAddress"]), "{name}");
            assert_eq!(p["signer"]["contract"], lower(&s["signerContract"]), "{name}");
            let policies = s["policies"].as_array().unwrap();
            assert_eq!(p["policies"].as_array().unwrap().len(), policies.len(), "{name}");
            for (got, want) in p["policies"].as_array().unwrap().iter().zip(policies) {
                assert_eq!(got["type"], want["type"], "{name}");
                assert_eq!(got["address"], lower(&want["address"]), "{name}");
                assert_eq!(got["flag"], want["flag"], "{name}");
            }
        } else {
            assert!(k["permission"].is_null(), "{name}");
        }
    }
    assert!(kernel_ops >= 30, "only {kernel_ops} Kernel ops checked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decode_refuses_what_is_not_a_user_operation() {
    let dir = std::env::temp_dir().join(format!("opgate-decode-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("not json", "not JSON"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#,
            "eth_chainId",
        ),
        (
            r#"[{"sender":"0x01"},"0x0000000071727De22E5E9d8BAf0edAc6f37da032"]"#,
            "sender",
        ),
        (
            r#"{"sender":"0x0000000000000000000000000000000000000001"}"#,
            "--entry-point",
        ),
    ];
    for (i, (input, needle)) in cases.iter().enumerate() {
        let file = dir.join(format!("{i}.json"));
        std::fs::write(&file, input).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_opgate"))
            .arg("decode")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{input}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{input}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
