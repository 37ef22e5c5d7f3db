"""service.config: defaults, TOML < env < flags, clear errors for unknown keys and bad values."""

import os
import re
from pathlib import Path

import pytest
from veraltheim.service.config import (
    ComputeConfig,
    ConfigError,
    DocsConfig,
    ServiceConfig,
    load_config,
    settings,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source():
    config = load_config({}, {}, None)
    assert config == ServiceConfig()
    assert config.port == 4000
    assert config.host == "127.0.0.1"
    assert config.auth is True
    assert config.secret_key is None
    assert config.compute.workers == (os.cpu_count() or 1)
    assert isinstance(config.docs, DocsConfig)
    assert config.pidfile_path == config.data_dir / "service.pid"
    assert config.daemon_log_path == config.data_dir / "service.log"
    assert not config.tls


def test_file_then_env_then_flags(tmp_path):
    path = write(
        tmp_path,
        """
        host = "0.0.0.0"
        port = 5000
        idle_timeout_s = 30
        allowed_origins = ["https://a.example"]
        [compute]
        workers = 3
        job_deadline_s = 5
        [docs]
        compact_every = 10
        """,
    )
    env = {
        "VERALTHEIM_PORT": "5001",
        "VERALTHEIM_COMPUTE_WORKERS": "4",
        "VERALTHEIM_AUTH": "off",
        "VERALTHEIM_ALLOWED_ORIGINS": "https://b.example, https://c.example",
    }
    config = load_config({"port": 0, "compute.queue_limit": 7, "host": None}, env, path)
    assert config.host == "0.0.0.0"  # file (the None flag is "not given")
    assert config.port == 0  # flag beats env beats file
    assert config.idle_timeout_s == 30.0 and isinstance(config.idle_timeout_s, float)
    assert config.allowed_origins == ("https://b.example", "https://c.example")
    assert config.auth is False
    assert config.compute.workers == 4  # env beats file
    assert config.compute.job_deadline_s == 5.0
    assert config.compute.queue_limit == 7
    assert config.docs.compact_every == 10


def test_nested_override_mapping_and_paths(tmp_path):
    config = load_config(
        {"compute": {"workers": 2}, "data_dir": str(tmp_path / "d"), "log_level": "debug"}, {}
    )
    assert config.compute == ComputeConfig(workers=2)
    assert config.data_dir == tmp_path / "d"
    assert config.log_level == "DEBUG"


def test_env_path_expands_user_and_empty_means_unset(monkeypatch):
    env = {"VERALTHEIM_DATA_DIR": "~/vh", "VERALTHEIM_LOG_FILE": ""}
    config = load_config({}, env)
    assert config.data_dir == Path("~/vh").expanduser()
    assert config.log_file is None


def test_env_reads_os_environ_when_not_given(monkeypatch):
    monkeypatch.setenv("VERALTHEIM_SHUTDOWN_GRACE_S", "2.5")
    assert load_config({}).shutdown_grace_s == 2.5


def test_other_veraltheim_env_vars_are_left_alone():
    # The client shares the prefix; only names of settings are read.
    assert load_config({}, {"VERALTHEIM_SERVER_URL": "ws://x"}) == ServiceConfig()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prot = 1", "unknown setting 'prot'"),
        ("[compute]\nworkerz = 1", "unknown setting 'compute.workerz'"),
        ("[gpu]\nx = 1", "unknown setting 'gpu'"),
        ('port = "http"', "bad value for 'port'"),
        ("port = 70000", "'port'"),
        ("auth = 1", "bad value for 'auth'"),
        ("compute = 3", "bad value for 'compute'"),
        ("[compute]\nworkers = 0", "'compute.workers'"),
        ('log_level = "loud"', "'log_level'"),
        ("allowed_origins = [1]", "'allowed_origins'"),
        ("socket_rate = -1", "'socket_rate'"),
        ("shutdown_grace_s = nan", "'shutdown_grace_s'"),
    ],
)
def test_bad_file_names_the_key_and_the_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config({}, {}, path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"VERALTHEIM_PORT": "eighty"}, "bad value for 'port' (env VERALTHEIM_PORT)"),
        ({"VERALTHEIM_AUTH": "maybe"}, "'auth' (env VERALTHEIM_AUTH): expected true or false"),
        ({"VERALTHEIM_DOCS_UPDATES_PER_S": "x"}, "'docs.updates_per_s'"),
        # NaN passes every bound check (each comparison is false): refused by name
        ({"VERALTHEIM_IDLE_TIMEOUT_S": "nan"}, "'idle_timeout_s' (env VERALTHEIM_IDLE_TIMEOUT_S)"),
    ],
)
def test_bad_env_names_the_variable(env, needle):
    with pytest.raises(ConfigError) as err:
        load_config({}, env)
    assert needle in str(err.value)


def test_bad_flag_value_and_unknown_flag_key():
    with pytest.raises(ConfigError, match=r"'port' \(command line\)"):
        load_config({"port": "x"}, {})
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        load_config({"nope": 1}, {})


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, {}, write(tmp_path, "port = = 1"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config({}, {}, tmp_path / "absent.toml")


def test_tls_needs_both_files(tmp_path):
    with pytest.raises(ConfigError, match="certfile and keyfile"):
        load_config({"certfile": str(tmp_path / "c.pem")}, {})
    config = load_config({"certfile": "c.pem", "keyfile": "k.pem"}, {})
    assert config.tls


def test_empty_secret_is_refused():
    with pytest.raises(ConfigError, match="secret_key"):
        load_config({}, {"VERALTHEIM_SECRET_KEY": "  "})


def test_settings_list_every_leaf_with_env_name():
    by_key = {s.key: s for s in settings()}
    assert by_key["port"].env == "VERALTHEIM_PORT"
    assert by_key["compute.workers"].env == "VERALTHEIM_COMPUTE_WORKERS"
    assert by_key["docs.idle_unload_s"].env == "VERALTHEIM_DOCS_IDLE_UNLOAD_S"
    assert "compute" not in by_key and "docs" not in by_key
    assert all(s.doc for s in settings())


def test_example_file_shows_current_defaults():
    """Every entry of resources/config.example.toml is a real setting shown at its current
    default; every top-level setting is there. (A key added to [compute] or [docs] later may be
    missing until the file is regenerated: `veraltheim-service config --example`.)"""
    from veraltheim.service.config_doc import render_example

    example = Path(__file__).resolve().parents[2] / "resources" / "config.example.toml"
    regenerate = "regenerate: veraltheim-service config --example > resources/config.example.toml"
    current = render_example().split("\n\n")
    entries = [e for e in example.read_text().split("\n\n") if "(env VERALTHEIM_" in e]
    for entry in entries:
        body = entry.split("\n[")[0].strip("\n")  # an entry may be followed by a [table] line
        assert any(body in block for block in current), f"stale entry:\n{body}\n{regenerate}"
    text = example.read_text()
    for s in settings():
        if s.section is None:
            assert f"# {s.name} = " in text and f"(env {s.env})" in text, regenerate


def test_example_defaults_uncommented_load_as_the_defaults(tmp_path):
    from veraltheim.service.config_doc import render_example

    # Uncomment every line that shows a concrete default; the result must be the defaults.
    text = [
        line.removeprefix("# ")
        for line in render_example().splitlines()
        if line.startswith("[") or re.match(r"# \w+ = [^<(]", line)
    ]
    assert "[docs]" in text and "port = 4000" in text
    assert load_config({}, {}, write(tmp_path, "\n".join(text))) == ServiceConfig()


def test_effective_config_round_trips_through_load_config(tmp_path):
    from veraltheim.service.config_doc import render_effective

    config = load_config(
        {"port": 0, "auth": False, "compute.workers": 3, "allowed_origins": "https://x.example"},
        {"VERALTHEIM_DOCS_COMPACT_EVERY": "7", "VERALTHEIM_SECRET_KEY": "s3cret"},
    )
    text = render_effective(config)
    assert "s3cret" not in text
    again = load_config({}, {}, write(tmp_path, text))
    assert again == ServiceConfig(**{**config.__dict__, "secret_key": None})


def test_markdown_table_has_a_row_per_setting():
    from veraltheim.service.config_doc import render_markdown

    table = render_markdown().splitlines()
    assert len(table) == 2 + len(settings())
    assert (
        "| `compute.workers` | `VERALTHEIM_COMPUTE_WORKERS` | number of CPUs |"
        in table[2 + [s.key for s in settings()].index("compute.workers")]
    )


# --- the signing secret -------------------------------------------------------------------------


def test_secret_from_config_wins_and_writes_nothing(tmp_path):
    from veraltheim.service.secret import load_or_create_secret

    config = load_config({"data_dir": str(tmp_path)}, {"VERALTHEIM_SECRET_KEY": "from-env"})
    assert load_or_create_secret(config) == "from-env"
    assert not (tmp_path / "secret_key").exists()


def test_secret_generated_once_with_mode_0600(tmp_path):
    import stat

    from veraltheim.service.secret import load_or_create_secret

    config = load_config({"data_dir": str(tmp_path / "new")}, {})
    first = load_or_create_secret(config)
    path = tmp_path / "new" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 43  # 32+ random bytes, base64url
    assert load_or_create_secret(config) == first
    assert load_or_create_secret(load_config({"data_dir": str(tmp_path / "other")}, {})) != first


def test_secret_being_written_by_another_process_is_never_read_half_made(tmp_path, monkeypatch):
    """A second `token issue`/`run` reading while the first writes gets the same whole secret."""
    from veraltheim.service.secret import load_or_create_secret

    config = load_config({"data_dir": str(tmp_path)}, {})
    real_fdopen, seen = os.fdopen, []

    def fdopen_then_race(fd, *args, **kwargs):
        monkeypatch.setattr(os, "fdopen", real_fdopen)
        # the other process arrives while this one holds an unwritten file
        seen.append(load_or_create_secret(config))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen_then_race)
    first = load_or_create_secret(config)
    assert seen == [first]
    assert (tmp_path / "secret_key").read_text().strip() == first
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary file left


def test_empty_secret_file_is_a_clear_error(tmp_path):
    from veraltheim.service.secret import SecretError, load_or_create_secret

    (tmp_path / "secret_key").write_text("\n")
    with pytest.raises(SecretError, match="is empty; delete it"):
        load_or_create_secret(load_config({"data_dir": str(tmp_path)}, {}))


def test_world_readable_secret_file_is_warned_about(tmp_path, caplog):
    from veraltheim.service.secret import load_or_create_secret

    path = tmp_path / "secret_key"
    path.write_text("kept\n")
    path.chmod(0o644)
    assert load_or_create_secret(load_config({"data_dir": str(tmp_path)}, {})) == "kept"
    assert "readable by others" in caplog.text


# --- TLS ----------------------------------------------------------------------------------------


def test_dev_cert_loads_into_a_server_context_and_is_trusted_by_a_client(tmp_path):
    import ssl

    from veraltheim.service.tls import client_ssl_context, make_dev_cert, server_ssl_context

    cert, key = make_dev_cert(tmp_path, ["localhost", "127.0.0.1", "myhost.test"])
    config = load_config({"certfile": str(cert), "keyfile": str(key)}, {})
    assert isinstance(server_ssl_context(config), ssl.SSLContext)
    client = client_ssl_context(cert)
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert any("Veraltheim development" in str(c) for c in client.get_ca_certs())
    assert server_ssl_context(load_config({}, {})) is None


def test_mismatched_key_is_a_clear_tls_error(tmp_path):
    from veraltheim.service.tls import TLSConfigError, make_dev_cert, server_ssl_context

    cert, _ = make_dev_cert(tmp_path / "a")
    _, other_key = make_dev_cert(tmp_path / "b")
    config = load_config({"certfile": str(cert), "keyfile": str(other_key)}, {})
    with pytest.raises(TLSConfigError, match="cannot load TLS certificate"):
        server_ssl_context(config)
