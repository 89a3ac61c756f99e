//! The deployment files under `deploy/` against the binary they deploy. Every flag and `CEC_*` variable
//! they pass is one `cec-exporter --help` lists; each one's launch (the Dockerfile's entrypoint and
//! environment, the systemd unit's `ExecStart` and environment file, the StatefulSet's container), its
//! paths mapped into a temporary directory, starts an exporter that gets ready against the simulator,
//! writes its state where the volume is and exits 0 on SIGTERM. With the tools: `systemd-analyze verify`
//! and the unit's sandbox rating, and `kubectl kustomize` rendering the base with the probes, ports,
//! security context and mounts its flags point at. The PrometheusRule holds exactly the groups of
//! `prometheus/rules/`. No docker daemon runs here: the Dockerfile is read, never built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cec_sim::Traffic;
use serde::Deserialize as _;
use serde_yaml::Value;

use crate::harness::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ------------------------------------------------------------------------------------------------
// What --help offers
// ------------------------------------------------------------------------------------------------

/// The long flags and the `CEC_*` variables `cec-exporter --help` names.
struct Help {
    flags: BTreeSet<String>,
    vars: BTreeSet<String>,
}

fn help() -> Help {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success(), "cec-exporter --help: {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("-h, ").or_else(|| t.strip_prefix("-V, ")).unwrap_or(t);
        if let Some(rest) = t.strip_prefix("--") {
            flags.insert(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect());
        }
        // `[env: CEC_URL=]`, and the secret's variable, which only the help text names ("Or set CEC_APP_SECRET").
        for (i, _) in line.match_indices("CEC_") {
            vars.insert(
                line[i..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect(),
            );
        }
    }
    // The parse itself, so an empty set cannot make every check below pass.
    for f in ["state.path", "cec.app-secret-file", "web.listen-address", "web.config.file", "cec.url"] {
        assert!(flags.contains(f), "--help parsed without --{f}: {flags:?}");
    }
    for v in ["CEC_STATE_PATH", "CEC_APP_SECRET_FILE", "CEC_APP_SECRET", "CEC_URL", "CEC_APP_KEY"] {
        assert!(vars.contains(v), "--help parsed without {v}: {vars:?}");
    }
    Help { flags, vars }
}

// ------------------------------------------------------------------------------------------------
// What each deployment file hands the exporter
// ------------------------------------------------------------------------------------------------

/// One deployment's launch of the exporter, as its file writes it.
#[derive(Debug)]
struct Launch {
    file: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Paths inside the deployment that hold something (a volume, a credential, a secret): each is
    /// mapped to a directory of the test, and every path the launch passes must lie under one.
    mounts: Vec<Mount>,
}

#[derive(Debug)]
struct Mount {
    path: String,
    /// Files the deployment puts there: (name, content).
    files: Vec<(String, String)>,
}

/// Lines of a file with `\` continuations joined and `#` comment lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if cur.is_empty() && (line.trim_start().starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur).trim().to_owned());
            }
        }
    }
    out
}

/// The Dockerfile's instructions: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    logical_lines(&read("deploy/Dockerfile"))
        .into_iter()
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((&l, ""));
            (i.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

fn docker_launch() -> Launch {
    let ins = dockerfile();
    let all = |name: &str| ins.iter().filter(|(i, _)| i == name).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let json = |r: &str| serde_json::from_str::<Vec<String>>(r).unwrap_or_else(|e| panic!("not exec form {r}: {e}"));
    let entrypoint = json(&all("ENTRYPOINT").pop().expect("an ENTRYPOINT"));
    let mut args = entrypoint[1..].to_vec();
    args.extend(all("CMD").pop().map(|c| json(&c)).unwrap_or_default());
    let env = all("ENV")
        .iter()
        .flat_map(|r| r.split_whitespace().map(|kv| kv.split_once('=').expect("ENV K=V")).collect::<Vec<_>>())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut mounts: Vec<Mount> =
        all("VOLUME").iter().flat_map(|v| json(v)).map(|path| Mount { path, files: vec![] }).collect();
    // The operator's part (the header's `docker run`): the URL, the key and a mounted secret file.
    mounts
        .push(Mount { path: "/run/secrets".into(), files: vec![("cec-app-secret".into(), format!("{APP_SECRET}\n"))] });
    Launch { file: "deploy/Dockerfile", args, env, mounts }
}

/// The unit's `[Service]` settings, in order: (key, value).
fn unit() -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for l in logical_lines(&read("deploy/systemd/cec-exporter.service")) {
        if l.starts_with('[') {
            section = l;
        } else if section == "[Service]" {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not key=value: {l}"));
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn unit_get(u: &[(String, String)], key: &str) -> Vec<String> {
    u.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
}

fn unit_one(u: &[(String, String)], key: &str) -> String {
    let v = unit_get(u, key);
    assert_eq!(v.len(), 1, "{key}= once in the unit: {v:?}");
    v[0].clone()
}

/// `KEY=value` lines of the example environment file; `commented` also the `# KEY=value` ones.
fn env_file(commented: bool) -> Vec<(String, String)> {
    read("deploy/systemd/cec-exporter.env")
        .lines()
        .filter_map(|l| match l.strip_prefix("# ") {
            Some(c) if commented => Some(c),
            Some(_) => None,
            None => Some(l),
        })
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn systemd_launch() -> Launch {
    let u = unit();
    let exec: Vec<String> = unit_one(&u, "ExecStart").split_whitespace().map(str::to_owned).collect();
    assert_eq!(exec[0], "/usr/local/bin/cec-exporter", "ExecStart runs the installed binary");
    let envfile = unit_one(&u, "EnvironmentFile");
    assert_eq!(
        envfile, "/etc/cec-exporter/cec-exporter.env",
        "the unit reads the example environment file's install path"
    );
    let mut env = env_file(false);
    env.extend(unit_get(&u, "Environment").iter().map(|e| {
        let (k, v) = e.split_once('=').unwrap();
        (k.to_owned(), v.to_owned())
    }));
    // systemd's specifiers, as paths: %S the state root (/var/lib), %d the credentials directory.
    let args = exec[1..]
        .iter()
        .map(|a| a.replace("%S", "/var/lib").replace("%d", "/run/credentials/cec-exporter.service"))
        .collect();
    let credentials = unit_get(&u, "LoadCredential")
        .iter()
        .map(|c| (c.split_once(':').expect("LoadCredential=NAME:PATH").0.to_owned(), format!("{APP_SECRET}\n")))
        .collect();
    let state = format!("/var/lib/{}", unit_one(&u, "StateDirectory"));
    Launch {
        file: "deploy/systemd/cec-exporter.service",
        args,
        env,
        mounts: vec![
            Mount { path: state, files: vec![] },
            Mount { path: "/run/credentials/cec-exporter.service".into(), files: credentials },
        ],
    }
}

/// The documents of a multi-document YAML text.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn one_of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// The value a Secret holds under `key` (`stringData` or base64 `data`).
fn secret_value(secret: &Value, key: &str) -> String {
    if let Some(v) = secret["stringData"][key].as_str() {
        return v.to_owned();
    }
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.decode(s(&secret["data"][key])).unwrap();
    String::from_utf8(b).unwrap()
}

/// The StatefulSet's container launch from the manifests `docs` (raw files or kustomize's output).
fn kubernetes_launch(docs: &[Value]) -> Launch {
    let sts = one_of_kind(docs, "StatefulSet");
    let secret = one_of_kind(docs, "Secret");
    let pod = &sts["spec"]["template"]["spec"];
    let containers = seq(&pod["containers"]);
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];
    assert!(c["command"].is_null(), "the image's ENTRYPOINT runs the binary; the container only passes args");
    let args = seq(&c["args"]).iter().map(|a| s(a).to_owned()).collect();
    let env = seq(&c["env"])
        .iter()
        .map(|e| {
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    assert_eq!(s(&r["name"]), s(&secret["metadata"]["name"]), "{e:?} reads the Secret");
                    secret_value(secret, s(&r["key"]))
                }
            };
            (s(&e["name"]).to_owned(), value)
        })
        .collect();
    let claims: Vec<&str> =
        seq(&sts["spec"]["volumeClaimTemplates"]).iter().map(|t| s(&t["metadata"]["name"])).collect();
    let mut mounts = Vec::new();
    for m in seq(&c["volumeMounts"]) {
        let name = s(&m["name"]);
        let path = s(&m["mountPath"]).to_owned();
        if claims.contains(&name) {
            mounts.push(Mount { path, files: vec![] });
            continue;
        }
        let vol =
            seq(&pod["volumes"]).iter().find(|v| s(&v["name"]) == name).unwrap_or_else(|| panic!("volume {name}"));
        let sv = &vol["secret"];
        assert_eq!(s(&sv["secretName"]), s(&secret["metadata"]["name"]), "volume {name} is the Secret");
        // The test's own simulator takes the test secret; the file name is the manifest's.
        let files = seq(&sv["items"]).iter().map(|i| (s(&i["path"]).to_owned(), format!("{APP_SECRET}\n"))).collect();
        assert!(!secret_value(secret, s(&seq(&sv["items"])[0]["key"])).is_empty(), "the Secret holds the mounted key");
        mounts.push(Mount { path, files });
    }
    Launch { file: "deploy/kubernetes/statefulset.yaml", args, env, mounts }
}

fn raw_kubernetes_docs() -> Vec<Value> {
    let k: Value = serde_yaml::from_str(&read("deploy/kubernetes/kustomization.yaml")).unwrap();
    seq(&k["resources"]).iter().flat_map(|r| yaml_docs(&read(&format!("deploy/kubernetes/{}", s(r))))).collect()
}

/// The flag an argument sets (`--state.path=/x` and `--state.path` both give `state.path`).
fn flag_of(arg: &str) -> Option<&str> {
    arg.strip_prefix("--").map(|a| a.split_once('=').map_or(a, |(f, _)| f))
}

fn assert_known(l: &Launch, h: &Help) {
    let mut expect_value = false;
    for a in &l.args {
        match flag_of(a) {
            Some(f) => {
                assert!(h.flags.contains(f), "{}: --{f} is not a flag of cec-exporter --help", l.file);
                expect_value = !a.contains('=');
            }
            None => {
                assert!(expect_value, "{}: {a:?} is neither a flag nor its value", l.file);
                expect_value = false;
            }
        }
    }
    for (k, _) in &l.env {
        assert!(h.vars.contains(k), "{}: {k} is not a variable of cec-exporter --help", l.file);
    }
}

// ------------------------------------------------------------------------------------------------
// Tests without tools
// ------------------------------------------------------------------------------------------------

/// Every flag and `CEC_*` variable the Dockerfile, the unit, its example environment file (commented
/// lines included: they are there to be uncommented) and the manifests pass exists in `--help`.
#[test]
fn every_flag_and_variable_the_deployment_files_pass_is_in_help() {
    let h = help();
    let launches = [docker_launch(), systemd_launch(), kubernetes_launch(&raw_kubernetes_docs())];
    for l in &launches {
        assert_known(l, &h);
    }
    for (k, _) in env_file(true) {
        assert!(h.vars.contains(&k), "deploy/systemd/cec-exporter.env: {k} is not a variable of --help");
    }
    // What each one relies on is really passed (the secret as a file, the state on its volume).
    let sets = |l: &Launch, flag: &str, var: &str| {
        l.args.iter().any(|a| flag_of(a) == Some(flag)) || l.env.iter().any(|(k, _)| k == var)
    };
    for l in &launches[1..] {
        assert!(sets(l, "cec.app-secret-file", "CEC_APP_SECRET_FILE"), "{}: the secret as a file", l.file);
    }
    for l in &launches {
        assert!(sets(l, "state.path", "CEC_STATE_PATH"), "{}: --state.path", l.file);
        assert!(!l.env.iter().any(|(k, _)| k == "CEC_APP_SECRET"), "{}: the secret never in the environment", l.file);
    }
}

/// The Dockerfile: a builder stage running `cargo build --release --locked`, a runtime stage from an
/// official Docker Hub image, a numeric non-root user, the state path on the volume, the default port
/// exposed, and the entrypoint being the binary it copied.
#[test]
fn the_dockerfile_builds_locked_and_runs_the_binary_unprivileged_with_its_state_on_a_volume() {
    let ins = dockerfile();
    let all = |name: &str| ins.iter().filter(|(i, _)| i == name).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "multi-stage: build, runtime: {froms:?}");
    for f in &froms {
        let image = f.split_whitespace().next().unwrap();
        // Docker Hub's official images have no registry host and no namespace.
        assert!(!image.contains('/'), "{image}: only Docker Hub official images");
        assert!(image.contains(':') && !image.ends_with(":latest"), "{image}: a pinned tag");
    }
    assert!(froms[0].starts_with("rust:") && froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(all("RUN").iter().any(|r| r.contains("cargo build --release --locked")), "the locked release build");
    let copy =
        all("COPY").into_iter().find(|c| c.starts_with("--from=build ")).expect("the binary copied from the build");
    let (src, dst) = copy["--from=build ".len()..].split_once(' ').unwrap();
    assert_eq!(src, "/src/target/release/cec-exporter");
    let entry: Vec<String> = serde_json::from_str(&all("ENTRYPOINT").pop().unwrap()).unwrap();
    assert_eq!(entry[0], dst, "the ENTRYPOINT is the copied binary (exec form, so SIGTERM reaches it)");

    let user = all("USER").pop().expect("a USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric UID (runAsNonRoot can check it)");
    assert_ne!(uid, 0, "not root");
    // The runtime stage makes the volume's directory the user's own (private, as the store wants it).
    let runtime = ins.iter().position(|(i, r)| i == "FROM" && r == &froms[1]).unwrap();
    let volume: Vec<String> = serde_json::from_str(&all("VOLUME").pop().unwrap()).unwrap();
    assert!(
        ins[runtime..]
            .iter()
            .any(|(i, r)| i == "RUN" && r.contains(&format!("-o {uid} -g {uid} -m 0700 {}", volume[0]))),
        "{} created 0700 for UID {uid}",
        volume[0]
    );
    let l = docker_launch();
    let state = l.env.iter().find(|(k, _)| k == "CEC_STATE_PATH").map(|(_, v)| v.clone()).expect("CEC_STATE_PATH");
    assert!(state.starts_with(&format!("{}/", volume[0])), "{state} on the volume {volume:?}");
    assert_eq!(all("EXPOSE"), vec!["10049".to_owned()], "the default --web.listen-address port");
    let h = String::from_utf8(bin().arg("--help").output().unwrap().stdout).unwrap();
    assert!(h.contains("[default: :10049;"), "--web.listen-address still defaults to :10049");
    // HEALTHCHECK would need a tool the image does not have (curl, wget).
    assert!(all("HEALTHCHECK").is_empty());
    let ignore = read(".dockerignore");
    for p in ["target/", ".git/"] {
        assert!(ignore.lines().any(|l| l == p), ".dockerignore keeps {p} out of the build context");
    }
}

/// The unit's sandbox and lifecycle settings the README promises, and its specifiers pointing where
/// systemd puts the state and the credential.
#[test]
fn the_unit_is_sandboxed_keeps_its_state_in_its_state_directory_and_reads_the_secret_as_a_credential() {
    let u = unit();
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectoryMode", "0700"),
    ] {
        assert_eq!(unit_one(&u, k), v, "{k}=");
    }
    assert_eq!(unit_get(&u, "SystemCallFilter"), vec!["@system-service", "~@privileged @resources"]);
    let state_dir = unit_one(&u, "StateDirectory");
    let exec = unit_one(&u, "ExecStart");
    assert!(exec.split_whitespace().any(|a| a == format!("--state.path=%S/{state_dir}")), "{exec}");
    let cred = unit_one(&u, "LoadCredential");
    let (name, source) = cred.split_once(':').unwrap();
    assert!(source.starts_with("/etc/cec-exporter/"), "{cred}");
    assert!(exec.split_whitespace().any(|a| a == format!("--cec.app-secret-file=%d/{name}")), "{exec}");
    // No secret in the unit or its environment file.
    assert!(!read("deploy/systemd/cec-exporter.env").contains("CEC_APP_SECRET"));
}

/// The PrometheusRule's groups are, parsed, exactly the groups of `prometheus/rules/*.yml` in file
/// order (byte for byte, `generate.py --check`: the ignored test below and scripts/test.sh).
#[test]
fn the_prometheus_rule_holds_exactly_the_groups_of_the_rule_files() {
    let rule: Value = serde_yaml::from_str(&read("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    assert_eq!(s(&rule["apiVersion"]), "monitoring.coreos.com/v1");
    assert_eq!(s(&rule["kind"]), "PrometheusRule");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("prometheus/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let mut expected = Vec::new();
    for f in &files {
        let v: Value = serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        expected.extend(seq(&v["groups"]).iter().cloned());
    }
    let got = seq(&rule["spec"]["groups"]);
    assert!(!expected.is_empty());
    let names = |g: &[Value]| g.iter().map(|g| s(&g["name"]).to_owned()).collect::<Vec<_>>();
    assert_eq!(names(got), names(&expected), "the same groups in the same order");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(
            g,
            e,
            "group {} differs from prometheus/rules: run python3 deploy/kubernetes/generate.py",
            s(&e["name"])
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Each launch, run
// ------------------------------------------------------------------------------------------------

/// Runs `l` against `sim_url` with every mount mapped into `dir`, the operator's settings (URL, key)
/// pointed at the simulator, and the listen address on a free loopback port; checks it gets ready,
/// writes its store at the state path on the volume, and exits 0 on SIGTERM. With `trace`, the exporter
/// runs under `strace -f` writing there.
async fn run_launch(l: &Launch, sim_url: &str, extra_env: &[(&str, &str)], trace: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let mut mapped: Vec<(String, PathBuf)> = Vec::new();
    for (i, m) in l.mounts.iter().enumerate() {
        let host = dir.path().join(format!("mount{i}"));
        std::fs::create_dir_all(&host).unwrap();
        // Private, as each deployment makes it (StateDirectoryMode=0700, the image's `install -m 0700`,
        // a credentials directory); a looser one would only make the exporter tighten it with a warning.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        for (name, content) in &m.files {
            std::fs::write(host.join(name), content).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(host.join(name), std::fs::Permissions::from_mode(0o400)).unwrap();
            }
        }
        mapped.push((m.path.clone(), host));
    }
    let map = |v: &str| -> String {
        if !v.starts_with('/') {
            return v.to_owned();
        }
        let (from, to) = mapped
            .iter()
            .find(|(p, _)| v == p || v.starts_with(&format!("{p}/")))
            .unwrap_or_else(|| panic!("{}: {v} is on no volume, credential or secret mount: {:?}", l.file, l.mounts));
        format!("{}{}", to.display(), &v[from.len()..])
    };
    let args: Vec<String> = l
        .args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => format!("{f}={}", map(v)),
            _ => map(a),
        })
        .collect();
    let mut env: Vec<(String, String)> = l.env.iter().map(|(k, v)| (k.clone(), map(v))).collect();
    for (k, v) in [("CEC_URL", sim_url), ("CEC_APP_KEY", APP_KEY)].iter().chain(extra_env) {
        env.retain(|(e, _)| e != k);
        env.push((k.to_string(), map(v)));
    }
    let state = args
        .iter()
        .find(|a| flag_of(a) == Some("state.path"))
        .and_then(|a| a.split_once('='))
        .map(|(_, v)| v.to_owned())
        .or_else(|| env.iter().find(|(k, _)| k == "CEC_STATE_PATH").map(|(_, v)| v.clone()))
        .expect("a state path");
    let port = free_port();
    let stderr_path = dir.path().join("stderr.log");
    let mut cmd = match trace {
        Some(t) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o"]).arg(t).arg("--").arg(env!("CARGO_BIN_EXE_cec-exporter"));
            c
        }
        None => bin(),
    };
    let mut child = cmd
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(&args)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{}: exited {status} before ready; args {args:?}\n{}", l.file, log());
        }
        let r = client.get(format!("http://127.0.0.1:{port}/-/ready")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "{}: not ready in 30 s\n{}", l.file, log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy = client.get(format!("http://127.0.0.1:{port}/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let store = Path::new(&state).join("cec-exporter.redb");
    assert!(store.is_file(), "{}: no store at {} (the state path on the volume)", l.file, store.display());
    assert!(!log().contains("level=warn"), "{}: a warning at start-up:\n{}", l.file, log());
    // Under strace the exporter is strace's child: its pid starts every line of the trace (strace
    // passes its exit status on).
    let pid = match trace {
        Some(t) => std::fs::read_to_string(t).unwrap().split_whitespace().next().unwrap().to_owned(),
        None => child.id().to_string(),
    };
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{}: still running 15 s after SIGTERM", l.file);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{}: SIGTERM ends it with exit 0\n{}", l.file, log());
    assert!(log().contains("msg=\"shutting down\""), "{}", log());
}

/// Each deployment's launch, as its file writes it (paths mapped into a temporary directory), runs the
/// exporter to ready against the simulator with its store on the volume, and SIGTERM stops it with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deployment_s_launch_gets_ready_keeps_its_state_on_the_volume_and_stops_on_sigterm() {
    let sim = Sim::start(Traffic::None).await;
    // docker run -e CEC_APP_SECRET_FILE=/run/secrets/cec-app-secret (the Dockerfile's header).
    run_launch(&docker_launch(), &sim.url, &[("CEC_APP_SECRET_FILE", "/run/secrets/cec-app-secret")], None).await;
    run_launch(&systemd_launch(), &sim.url, &[], None).await;
    // The manifests log JSON: check the text of "shutting down" in logfmt, as for the others.
    run_launch(&kubernetes_launch(&raw_kubernetes_docs()), &sim.url, &[("CEC_LOG_FORMAT", "logfmt")], None).await;
}

// ------------------------------------------------------------------------------------------------
// With the tools
// ------------------------------------------------------------------------------------------------

/// The syscalls of `@group` as `systemd-analyze syscall-filter` lists them, nested groups expanded.
fn syscall_group(group: &str) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze").args(["syscall-filter", group]).output().expect("systemd-analyze");
    assert!(out.status.success(), "systemd-analyze syscall-filter {group}");
    let mut set = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('@') {
            set.extend(syscall_group(t));
        } else {
            set.insert(t.to_owned());
        }
    }
    set
}

/// What the unit's sandbox forbids, the exporter does not do: run with the unit's launch under
/// `strace -f` (against the simulator, by host name, through a first poll, a commit, a scrape and
/// SIGTERM), every syscall it makes is in `SystemCallFilter=@system-service` and none in
/// `~@privileged @resources`; every socket is of `RestrictAddressFamilies=`; no mapping is writable and
/// executable at once (`MemoryDenyWriteExecute=`); it opens nothing under /home or /root
/// (`ProtectHome=`), no device but the ones `PrivateDevices=` keeps, and in /proc only its own process
/// (`ProcSubset=pid`) or what it can do without (`/proc/sys`, read-only under `ProtectKernelTunables=`).
/// No systemd runs here to enforce the unit itself; this checks the binary against what it declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs strace and systemd-analyze (scripts/test.sh installs them and runs this test)"]
async fn the_exporter_makes_no_syscall_and_opens_no_socket_the_unit_s_sandbox_forbids() {
    let sim = Sim::start(Traffic::None).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // A host name, so name resolution (nsswitch, /etc/hosts) is part of the run.
    let url = sim.url.replace("127.0.0.1", "localhost");
    run_launch(&systemd_launch(), &url, &[], Some(&trace)).await;
    let text = std::fs::read_to_string(&trace).unwrap();

    let u = unit();
    let filters = unit_get(&u, "SystemCallFilter");
    assert_eq!(filters, ["@system-service", "~@privileged @resources"], "the filters this test reads");
    let allowed = syscall_group("@system-service");
    let denied: BTreeSet<String> = ["@privileged", "@resources"].iter().flat_map(|g| syscall_group(g)).collect();
    assert!(allowed.contains("read") && denied.contains("setuid"), "groups parsed");
    let mut used = BTreeSet::new();
    let mut families = BTreeSet::new();
    let mut opened = BTreeSet::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.is_empty() || !rest[name.len()..].starts_with('(') {
            continue; // "+++ exited", "--- SIGTERM", "<... resumed>"
        }
        if name == "socket" {
            families.insert(rest["socket(".len()..].split([',', ')']).next().unwrap().to_owned());
        }
        if name.starts_with("open") {
            if let Some(path) = rest.split('"').nth(1) {
                opened.insert(path.to_owned());
            }
        }
        assert!(
            !(rest.contains("PROT_WRITE") && rest.contains("PROT_EXEC")),
            "a writable and executable mapping (MemoryDenyWriteExecute=yes would refuse it): {line}"
        );
        used.insert(name);
    }
    assert!(used.contains("accept4") && used.contains("fdatasync"), "the trace covers serving and a commit: {used:?}");
    // execve is strace starting the binary, before any filter applies.
    used.remove("execve");
    let outside: Vec<_> = used.difference(&allowed).collect();
    assert!(outside.is_empty(), "syscalls outside @system-service: {outside:?}");
    let refused: Vec<_> = used.intersection(&denied).collect();
    assert!(refused.is_empty(), "syscalls in ~@privileged @resources: {refused:?}");

    let permitted: BTreeSet<String> =
        unit_one(&u, "RestrictAddressFamilies").split_whitespace().map(str::to_owned).collect();
    assert!(
        families.contains("AF_INET") && families.is_subset(&permitted),
        "socket families {families:?}, unit {permitted:?}"
    );

    let own_proc = |p: &str| p.starts_with("/proc/self/") || p.starts_with("/proc/thread-self/");
    for p in &opened {
        assert!(!p.starts_with("/home/") && !p.starts_with("/root/"), "ProtectHome=yes hides {p}");
        if let Some(dev) = p.strip_prefix("/dev/") {
            assert!(
                ["null", "zero", "full", "random", "urandom", "tty"].contains(&dev),
                "PrivateDevices=yes hides {p}"
            );
        }
        if p.starts_with("/proc/") {
            // glibc's malloc reads overcommit_memory and does without it when it is hidden.
            assert!(own_proc(p) || p == "/proc/sys/vm/overcommit_memory", "ProcSubset=pid hides {p}");
        }
    }
}

/// `systemd-analyze verify` accepts the unit (a copy whose ExecStart is the built binary: verify
/// refuses a missing executable), and `systemd-analyze security --offline=yes` rates its exposure at
/// most 1.2 (of 10).
#[test]
#[ignore = "needs systemd-analyze (scripts/test.sh installs systemd and runs this test)"]
fn systemd_analyze_verifies_the_unit_and_rates_its_exposure_at_most_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = read("deploy/systemd/cec-exporter.service");
    assert_eq!(text.matches("ExecStart=/usr/local/bin/cec-exporter ").count(), 1);
    let copy = dir.path().join("cec-exporter.service");
    std::fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/local/bin/cec-exporter ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_cec-exporter")),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("systemd-analyze")
            .args(args)
            .arg(&copy)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("systemd-analyze: {e} (needs systemd)"));
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stdout, stderr) = run(&["verify"]);
    assert!(
        status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify: {status}\n{stdout}{stderr}"
    );
    let (status, stdout, stderr) = run(&["security", "--offline=yes", "--threshold=12"]);
    let score = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for cec-exporter.service: "))
        .map(|(_, r)| r.split_whitespace().next().unwrap().parse::<f64>().unwrap())
        .unwrap_or_else(|| panic!("no overall exposure level:\n{stdout}{stderr}"));
    assert!(status.success() && score <= 1.2, "exposure {score} above 1.2 ({status}):\n{stdout}{stderr}");
}

/// `kubectl kustomize deploy/kubernetes` renders the five objects, wired together: the probes on the
/// named metrics port at `/-/healthy` and `/-/ready`, non-root with a read-only root and no
/// capabilities, resources set, the state path on the claim's volume, the secret file where the flag
/// points, the Service and ServiceMonitor selecting the pods on the port `metrics`.
#[test]
#[ignore = "needs kubectl (scripts/test.sh installs it and runs this test)"]
fn kubectl_kustomize_renders_the_base_wired_together() {
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy/kubernetes"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e} (needs kubectl)"));
    assert!(out.status.success(), "kubectl kustomize: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let docs = yaml_docs(&String::from_utf8(out.stdout).unwrap());
    let mut kinds: Vec<&str> = docs.iter().map(|d| s(&d["kind"])).collect();
    kinds.sort();
    assert_eq!(kinds, ["PrometheusRule", "Secret", "Service", "ServiceMonitor", "StatefulSet"]);
    let sts = one_of_kind(&docs, "StatefulSet");
    let svc = one_of_kind(&docs, "Service");
    let mon = one_of_kind(&docs, "ServiceMonitor");
    assert_eq!(s(&mon["apiVersion"]), "monitoring.coreos.com/v1");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1));
    assert_eq!(s(&spec["serviceName"]), s(&svc["metadata"]["name"]));
    let pod_labels = spec["template"]["metadata"]["labels"].as_mapping().unwrap();
    let within = |sel: &Value, what: &str| {
        let sel = sel.as_mapping().unwrap_or_else(|| panic!("{what}: no labels"));
        assert!(!sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "{what} selects the pods");
    };
    within(&spec["selector"]["matchLabels"], "the StatefulSet");
    within(&svc["spec"]["selector"], "the Service");
    let svc_labels = svc["metadata"]["labels"].as_mapping().unwrap();
    let ms = mon["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    assert!(
        !ms.is_empty() && ms.iter().all(|(k, v)| svc_labels.get(k) == Some(v)),
        "the ServiceMonitor selects the Service"
    );

    let pod = &spec["template"]["spec"];
    let c = &seq(&pod["containers"])[0];
    let ports = seq(&c["ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!((s(&ports[0]["name"]), ports[0]["containerPort"].as_i64()), ("metrics", Some(10049)));
    let sp = &seq(&svc["spec"]["ports"])[0];
    assert_eq!((s(&sp["name"]), s(&sp["targetPort"])), ("metrics", "metrics"));
    let ep = &seq(&mon["spec"]["endpoints"])[0];
    assert_eq!((s(&ep["port"]), s(&ep["path"])), ("metrics", "/metrics"));
    for (probe, path) in
        [("startupProbe", "/-/healthy"), ("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")]
    {
        let g = &c[probe]["httpGet"];
        assert_eq!((s(&g["path"]), s(&g["port"])), (path, "metrics"), "{probe}");
    }

    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true));
    assert!(psc["runAsUser"].as_i64().is_some_and(|u| u > 0), "a non-root UID");
    let csc = &c["securityContext"];
    assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(seq(&csc["capabilities"]["drop"]), &vec![Value::from("ALL")]);
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].as_str().is_some(), "resources.{k}.{r}");
        }
    }
    let mem = |q: &str| q.strip_suffix("Mi").unwrap().parse::<u32>().unwrap();
    assert!(mem(s(&c["resources"]["limits"]["memory"])) >= mem(s(&c["resources"]["requests"]["memory"])));

    // The state path lies on the claim's volume; the secret file is the mounted Secret's item.
    let l = kubernetes_launch(&docs);
    assert_known(&l, &help());
    let arg = |flag: &str| {
        l.args
            .iter()
            .find(|a| flag_of(a) == Some(flag))
            .and_then(|a| a.split_once('='))
            .map(|(_, v)| v.to_owned())
            .unwrap()
    };
    let state = arg("state.path");
    let claim = s(&seq(&spec["volumeClaimTemplates"])[0]["metadata"]["name"]);
    let mount = seq(&c["volumeMounts"]).iter().find(|m| s(&m["name"]) == claim).expect("the claim mounted");
    assert!(state.starts_with(&format!("{}/", s(&mount["mountPath"]))), "{state} on the claim's volume");
    let secret_file = arg("cec.app-secret-file");
    assert!(
        l.mounts.iter().any(|m| m.files.iter().any(|(name, _)| format!("{}/{name}", m.path) == secret_file)),
        "{secret_file} is a mounted Secret item: {:?}",
        l.mounts
    );
    let rendered_rule = one_of_kind(&docs, "PrometheusRule");
    let committed: Value = serde_yaml::from_str(&read("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    assert_eq!(rendered_rule["spec"], committed["spec"], "kustomize passes the rule groups through unchanged");
}

/// `deploy/kubernetes/prometheusrule.yaml` is, byte for byte, what its generator writes from the rule files.
#[test]
#[ignore = "needs python3 with PyYAML (scripts/test.sh runs this test)"]
fn the_prometheus_rule_is_what_its_generator_writes() {
    let out = Command::new("python3")
        .args(["deploy/kubernetes/generate.py", "--check"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate.py --check: {}\n{stdout}{stderr}", out.status);
    assert_eq!(
        stdout,
        "deploy/kubernetes/prometheusrule.yaml is what deploy/kubernetes/generate.py generates from \
         prometheus/rules/cec-exporter.rules.yml\n"
    );
}

/// The multi-tenant overlay renders: the StatefulSet's replicas are the shards (`CEC_SHARD_COUNT`),
/// each pod's shard is its ordinal, `--config.file` is the generated ConfigMap's tenants.yml, every
/// tenant's `app_secret_file` is a key of the Secret mounted where the file says, every flag and
/// variable passed is in `--help`, and the file itself passes `--config.check` once its paths point at
/// copies of those files.
#[test]
#[ignore = "needs kubectl (scripts/test.sh installs it and runs this test)"]
fn kubectl_kustomize_renders_the_multi_tenant_overlay_with_one_shard_per_replica() {
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy/kubernetes-multi-tenant"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e} (needs kubectl)"));
    assert!(out.status.success(), "kubectl kustomize: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let docs = yaml_docs(&String::from_utf8(out.stdout).unwrap());
    let (sts, cm, secret) =
        (one_of_kind(&docs, "StatefulSet"), one_of_kind(&docs, "ConfigMap"), one_of_kind(&docs, "Secret"));
    let pod = &sts["spec"]["template"]["spec"];
    let c = &seq(&pod["containers"])[0];
    let args: Vec<&str> = seq(&c["args"]).iter().map(s).collect();
    let env = seq(&c["env"]);
    let var = |name: &str| env.iter().find(|e| s(&e["name"]) == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(s(&var("CEC_SHARD_COUNT")["value"]), sts["spec"]["replicas"].as_i64().unwrap().to_string());
    assert_eq!(
        s(&var("CEC_SHARD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let h = help();
    for a in &args {
        let flag = flag_of(a).unwrap_or_else(|| panic!("{a} is a flag"));
        assert!(h.flags.contains(flag), "--{flag} is in --help");
    }
    for e in env {
        assert!(h.vars.contains(s(&e["name"])), "{} is in --help", s(&e["name"]));
    }
    // --config.file is the ConfigMap's file, mounted.
    let file = args.iter().find_map(|a| a.strip_prefix("--config.file=")).expect("--config.file");
    let (dir, name) = file.rsplit_once('/').unwrap();
    let mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| s(&m["mountPath"]) == dir)
        .expect("the config file's directory is mounted");
    let vol = seq(&pod["volumes"]).iter().find(|v| s(&v["name"]) == s(&mount["name"])).unwrap();
    assert_eq!(s(&vol["configMap"]["name"]), s(&cm["metadata"]["name"]));
    let yaml = s(&cm["data"][name]);
    // Each tenant's secret file is an item of the mounted Secret, which holds a value for it.
    let dir = tempfile::tempdir().unwrap();
    let secret_mount = seq(&c["volumeMounts"]).iter().find(|m| s(&m["name"]) == "secret").unwrap();
    let secret_vol = seq(&pod["volumes"]).iter().find(|v| s(&v["name"]) == "secret").unwrap();
    let tenants: Value = serde_yaml::from_str(yaml).unwrap();
    let mut local = yaml.to_owned();
    for t in seq(&tenants["tenants"]) {
        let path = s(&t["cec"]["app_secret_file"]);
        let (mdir, item) = path.rsplit_once('/').unwrap();
        assert_eq!(mdir, s(&secret_mount["mountPath"]), "{path} is in the Secret's mount");
        let key = seq(&secret_vol["secret"]["items"])
            .iter()
            .find(|i| s(&i["path"]) == item)
            .unwrap_or_else(|| panic!("{item} mounted"));
        let value = secret_value(secret, s(&key["key"]));
        assert!(!value.is_empty());
        let copy = dir.path().join(item);
        std::fs::write(&copy, value).unwrap();
        local = local.replace(path, copy.to_str().unwrap());
    }
    let file = dir.path().join(name);
    std::fs::write(&file, local).unwrap();
    let out = bin().args(["--config.file", file.to_str().unwrap(), "--config.check"]).env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: valid, 2 tenants: brand-a, brand-b\n", file.display())
    );
}
