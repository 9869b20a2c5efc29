"""Configuration: YAML plus environment, every bad value refused with a message naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orcarouter.settings import ConfigError, Settings, load_settings

ADMIN = "sk-orca-" + "a" * 32
OPENAI_KEY = "sk-proj-openai-secret-0123456789"
ANTHROPIC_KEY = "sk-ant-api03-secret-0123456789"


def _write(tmp_path: Path, config: Any) -> str:
    path = tmp_path / "orcarouter.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def _provider(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "local",
        "protocol": "openai",
        "base_url": "http://127.0.0.1:11434/v1",
    }
    entry.update(overrides)
    return entry


def _error(config_path: str | None, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_path, env)
    return str(info.value)


# --- defaults and precedence ---------------------------------------------------------------


def test_defaults_with_no_file_and_an_empty_environment() -> None:
    settings = load_settings(None, {})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.data_dir == Path("data")
    assert settings.database_url == "sqlite:///data/orcarouter.db"
    assert settings.admin_key is None
    assert settings.max_body_bytes == 20 * 1024 * 1024
    assert settings.access_log is True
    assert settings.providers == ()
    assert settings.model_overrides == ()
    assert settings.secrets() == ()


def test_an_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(str(path), {}) == load_settings(None, {})


def test_yaml_values_apply(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "host": "192.0.2.10",
            "port": 9000,
            "data_dir": str(tmp_path / "state"),
            "max_body_bytes": 4096,
            "access_log": False,
            "models": [{"provider": "local", "model": "llama3.2"}],
        },
    )
    settings = load_settings(path, {})
    assert (settings.host, settings.port) == ("192.0.2.10", 9000)
    assert settings.data_dir == tmp_path / "state"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'state' / 'orcarouter.db').as_posix()}"
    assert settings.max_body_bytes == 4096
    assert settings.access_log is False
    assert settings.model_overrides == ({"provider": "local", "model": "llama3.2"},)


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "host": "192.0.2.10",
            "port": 9000,
            "data_dir": "/from/yaml",
            "database_url": "sqlite:///from-yaml.db",
            "max_body_bytes": 4096,
            "access_log": False,
        },
    )
    settings = load_settings(
        path,
        {
            "ORCAROUTER_HOST": "10.0.0.1",
            "ORCAROUTER_PORT": "9443",
            "ORCAROUTER_DATA_DIR": "/from/env",
            "ORCAROUTER_DATABASE_URL": "postgresql://db.internal/orca",
            "ORCAROUTER_MAX_BODY_BYTES": "8192",
            "ORCAROUTER_ACCESS_LOG": "true",
        },
    )
    assert (settings.host, settings.port) == ("10.0.0.1", 9443)
    assert settings.data_dir == Path("/from/env")
    assert settings.database_url == "postgresql://db.internal/orca"
    assert settings.max_body_bytes == 8192
    assert settings.access_log is True


def test_the_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, {"port": 9100})
    assert load_settings(None, {"ORCAROUTER_CONFIG": path}).port == 9100


def test_the_explicit_config_path_wins_over_the_environment(tmp_path: Path) -> None:
    explicit = _write(tmp_path, {"port": 9200})
    assert load_settings(explicit, {"ORCAROUTER_CONFIG": str(tmp_path / "none.yaml")}).port == 9200


def test_the_database_defaults_to_a_file_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(None, {"ORCAROUTER_DATA_DIR": str(tmp_path / "d")})
    assert settings.database_url == f"sqlite:///{(tmp_path / 'd').as_posix()}/orcarouter.db"


def test_the_database_url_from_yaml_is_used_when_the_environment_has_none(tmp_path: Path) -> None:
    path = _write(tmp_path, {"database_url": "postgresql://db/orca", "data_dir": "/x"})
    assert load_settings(path, {}).database_url == "postgresql://db/orca"


def test_empty_environment_values_fall_back(tmp_path: Path) -> None:
    path = _write(tmp_path, {"port": 9300, "host": "::1"})
    settings = load_settings(
        path,
        {"ORCAROUTER_PORT": "", "ORCAROUTER_HOST": "", "ORCAROUTER_ADMIN_KEY": ""},
    )
    assert (settings.port, settings.host, settings.admin_key) == (9300, "::1", None)


# --- providers from the environment --------------------------------------------------------


def test_a_well_known_key_in_the_environment_enables_its_provider() -> None:
    settings = load_settings(None, {"OPENAI_API_KEY": OPENAI_KEY})
    (provider,) = settings.providers
    assert provider.id == "openai"
    assert provider.protocol == "openai"
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.api_key == OPENAI_KEY
    assert provider.models is None


def test_several_well_known_keys_enable_several_providers() -> None:
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY}
    settings = load_settings(None, env)
    by_id = {p.id: p for p in settings.providers}
    assert set(by_id) == {"openai", "anthropic"}
    assert by_id["anthropic"].protocol == "anthropic"
    assert by_id["anthropic"].base_url == "https://api.anthropic.com/v1"
    assert by_id["anthropic"].api_key == ANTHROPIC_KEY


def test_no_provider_without_keys_and_none_for_an_empty_key() -> None:
    assert load_settings(None, {"OPENAI_API_KEY": "", "UNRELATED": "x"}).providers == ()


def test_a_file_without_a_providers_section_still_uses_environment_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, {"port": 9000})
    assert [p.id for p in load_settings(path, {"OPENAI_API_KEY": OPENAI_KEY}).providers] == [
        "openai"
    ]


def test_declared_providers_replace_the_environment_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider()]})
    settings = load_settings(path, {"OPENAI_API_KEY": OPENAI_KEY})
    assert [p.id for p in settings.providers] == ["local"]


def test_an_empty_providers_list_enables_none(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": []})
    assert load_settings(path, {"OPENAI_API_KEY": OPENAI_KEY}).providers == ()


# --- providers from YAML -------------------------------------------------------------------


def test_a_declared_provider_is_resolved(tmp_path: Path) -> None:
    config = {
        "providers": [
            _provider(
                base_url="http://127.0.0.1:11434/v1/",
                models=["llama3.2", "qwen3"],
                headers={"X-Team": "core"},
                timeouts={"connect": 2, "total": 60},
                model_timeouts={"qwen3": {"first_byte": 300, "total": 1800}},
            ),
            {
                "id": "together",
                "protocol": "openai",
                "base_url": "https://api.together.xyz/v1",
                "api_key_env": "TOGETHER_KEY",
            },
        ]
    }
    settings = load_settings(_write(tmp_path, config), {"TOGETHER_KEY": "tg-secret-value"})
    local, together = settings.providers
    assert local.base_url == "http://127.0.0.1:11434/v1"
    assert local.api_key is None
    assert local.models == frozenset({"llama3.2", "qwen3"})
    assert dict(local.headers) == {"X-Team": "core"}
    assert (local.timeouts.connect, local.timeouts.total) == (2, 60)
    assert local.timeouts.first_byte == 120.0
    assert local.timeouts_for("llama3.2") is local.timeouts
    slow = local.timeouts_for("qwen3")  # a model's own timeouts replace the provider's
    assert (slow.first_byte, slow.total, slow.connect) == (300, 1800, 10.0)
    assert together.api_key == "tg-secret-value"


def test_health_and_egress_sections_are_validated(tmp_path: Path) -> None:
    config = {
        "health": {"consecutive_failures": 5, "probe_interval": 30},
        "egress": {"allow_private": True, "internal_hosts": ["*.corp.example"]},
    }
    settings = load_settings(_write(tmp_path, config), {})
    assert settings.health.consecutive_failures == 5 and settings.health.probe_interval == 30
    assert settings.health.retry_ratio == 0.2  # defaults for the rest
    assert settings.egress.allow_private and settings.egress.internal_hosts == ["*.corp.example"]
    assert not load_settings(None, {}).egress.allow_private  # private URLs refused by default
    with pytest.raises(ConfigError, match="consecutive_failures"):
        load_settings(_write(tmp_path, {"health": {"consecutive_failures": 0}}), {})
    with pytest.raises(ConfigError, match="surprise"):
        load_settings(_write(tmp_path, {"egress": {"surprise": 1}}), {})


@pytest.mark.parametrize("env", [{}, {"MY_VENDOR_KEY": ""}], ids=["unset", "empty"])
def test_a_missing_api_key_variable_is_named(tmp_path: Path, env: dict[str, str]) -> None:
    path = _write(tmp_path, {"providers": [_provider(id="vendor", api_key_env="MY_VENDOR_KEY")]})
    message = _error(path, env)
    assert "MY_VENDOR_KEY" in message
    assert "vendor" in message


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert str(missing) in _error(str(missing), {})


def test_bad_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers: [\n  - id: x\n port: :\n", encoding="utf-8")
    message = _error(str(path), {})
    assert "not valid YAML" in message
    assert str(path) in message


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(content, encoding="utf-8")
    assert "mapping" in _error(str(path), {})


def test_an_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"prot": 8080}), {})
    assert "prot" in message
    assert "Extra inputs" in message


def test_an_unknown_provider_key_is_named_with_its_position(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider(), _provider(id="b", api_key="inline")]})
    assert "providers.1.api_key" in _error(path, {})


def test_an_unknown_timeout_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider(timeouts={"read": 5})]})
    assert "providers.0.timeouts.read" in _error(path, {})


@pytest.mark.parametrize("bad_id", ["OpenAI", "my provider", "-lead", "a/b", "", "x" * 65])
def test_a_bad_provider_id_is_refused(tmp_path: Path, bad_id: str) -> None:
    assert "providers.0.id" in _error(_write(tmp_path, {"providers": [_provider(id=bad_id)]}), {})


def test_an_unknown_protocol_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider(protocol="grpc")]})
    assert "providers.0.protocol" in _error(path, {})


@pytest.mark.parametrize(
    "url",
    [
        "api.example.com/v1",
        "ftp://api.example.com/v1",
        "https://",
        "https://api.example.com/v1?key=abc",
        "https://api.example.com/v1#frag",
        "https://user@api.example.com/v1",
    ],
)
def test_a_bad_base_url_is_refused(tmp_path: Path, url: str) -> None:
    assert "providers.0.base_url" in _error(
        _write(tmp_path, {"providers": [_provider(base_url=url)]}), {}
    )


def test_credentials_in_a_base_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = _write(
        tmp_path, {"providers": [_provider(base_url="https://bob:hunter2-pass@api.example.com/v1")]}
    )
    message = _error(path, {})
    assert "providers.0.base_url" in message
    assert "hunter2-pass" not in message


def test_a_negative_timeout_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider(timeouts={"idle": 0})]})
    assert "providers.0.timeouts.idle" in _error(path, {})


def test_duplicate_provider_ids_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"providers": [_provider(), _provider(base_url="http://h.test/v1")]})
    message = _error(path, {})
    assert "'local'" in message
    assert "twice" in message


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("port", 70000), ("max_body_bytes", 10)])
def test_out_of_range_yaml_numbers_are_named(tmp_path: Path, field: str, value: int) -> None:
    assert field in _error(_write(tmp_path, {field: value}), {})


# --- environment values --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["eighty", "80.5", "0x50"])
def test_a_non_numeric_port_is_refused(value: str) -> None:
    message = _error(None, {"ORCAROUTER_PORT": value})
    assert "ORCAROUTER_PORT" in message
    assert value in message


@pytest.mark.parametrize("value", ["0", "-1", "65536"])
def test_a_port_out_of_range_is_refused(value: str) -> None:
    message = _error(None, {"ORCAROUTER_PORT": value})
    assert "ORCAROUTER_PORT" in message
    assert "between 1 and 65535" in message


@pytest.mark.parametrize("value", ["1", "65535"])
def test_port_bounds_are_inclusive(value: str) -> None:
    assert load_settings(None, {"ORCAROUTER_PORT": value}).port == int(value)


def test_max_body_bytes_below_the_floor_is_refused() -> None:
    assert "ORCAROUTER_MAX_BODY_BYTES" in _error(None, {"ORCAROUTER_MAX_BODY_BYTES": "100"})


@pytest.mark.parametrize(
    "key",
    [
        "sk-" + "a" * 40,  # wrong prefix
        "sk-orca-" + "a" * 31,  # one character short
        "orca-" + "a" * 40,
    ],
)
def test_a_malformed_admin_key_is_refused_without_echoing_it(key: str) -> None:
    message = _error(None, {"ORCAROUTER_ADMIN_KEY": key})
    assert "ORCAROUTER_ADMIN_KEY" in message
    assert "sk-orca-" in message
    assert key not in message


def test_a_well_formed_admin_key_is_kept() -> None:
    assert load_settings(None, {"ORCAROUTER_ADMIN_KEY": ADMIN}).admin_key == ADMIN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_access_log_values(value: str, expected: bool) -> None:
    assert load_settings(None, {"ORCAROUTER_ACCESS_LOG": value}).access_log is expected


def test_access_log_from_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"access_log": True})
    assert load_settings(path, {"ORCAROUTER_ACCESS_LOG": "off"}).access_log is False


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_an_unreadable_access_log_value_is_refused(value: str) -> None:
    message = _error(None, {"ORCAROUTER_ACCESS_LOG": value})
    assert "ORCAROUTER_ACCESS_LOG" in message
    assert value in message


# --- secrets -------------------------------------------------------------------------------


def _with_secrets(tmp_path: Path) -> Settings:
    path = _write(
        tmp_path,
        {
            "providers": [
                _provider(id="openai", base_url="https://api.openai.com/v1", api_key_env="OAI"),
                _provider(id="keyless"),
                _provider(id="anthropic", protocol="anthropic", api_key_env="ANT"),
            ]
        },
    )
    return load_settings(
        path, {"OAI": OPENAI_KEY, "ANT": ANTHROPIC_KEY, "ORCAROUTER_ADMIN_KEY": ADMIN}
    )


def test_secrets_lists_every_provider_key_and_the_admin_key(tmp_path: Path) -> None:
    assert set(_with_secrets(tmp_path).secrets()) == {OPENAI_KEY, ANTHROPIC_KEY, ADMIN}


def test_secrets_lists_environment_provider_keys() -> None:
    settings = load_settings(None, {"GROQ_API_KEY": "gsk_secret_value_123456"})
    assert settings.secrets() == ("gsk_secret_value_123456",)


def test_repr_never_shows_a_key(tmp_path: Path) -> None:
    settings = _with_secrets(tmp_path)
    for provider in settings.providers:
        if provider.api_key:
            assert provider.api_key not in repr(provider)
            assert provider.api_key not in str(provider)
    text = repr(settings)
    for secret in settings.secrets():
        assert secret not in text
    assert "openai" in text  # the repr is still useful
