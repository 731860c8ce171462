"""The settings: one reference generated from ``config.Settings``, strict parsing, one error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cleancut.config import Settings, env_var, load, reference_markdown
from cleancut.errors import CleancutError, InvalidSetting

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "settings.md"
NAME = re.compile(r"CLEANCUT_[A-Z0-9_]+")

# CLEANCUT_* names the docs may mention that are not settings of the product.
NOT_SETTINGS = {
    "CLEANCUT_SOAK_REQUESTS",  # tests/server/test_memory.py: length of the long soak run
    "CLEANCUT_FUZZ_PROFILE",  # tests/test_fuzz.py, tests/server/test_fuzz_api.py: "long" runs
}

BOOL_FIELDS = sorted(name for name, info in Settings.model_fields.items()
                     if info.annotation is bool)


def _env(**values: str) -> dict[str, str]:
    return {"CLEANCUT_MODEL_DIR": "/nonexistent/models", **values}


# --- (a) the committed reference is the generated one -------------------------------------------
def test_docs_settings_md_is_generated_from_the_settings() -> None:
    assert DOCS.is_file(), "docs/settings.md is missing: run scripts/gen-docs"
    assert DOCS.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/settings.md is out of date with src/cleancut/config.py: run scripts/gen-docs")


def test_the_reference_names_every_setting_once_with_its_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = reference_markdown()
    assert capsys.readouterr() == ("", "")  # renders, prints nothing
    rows = [line for line in text.splitlines() if line.startswith("| `CLEANCUT_")]
    assert [NAME.findall(row)[0] for row in rows] == [env_var(n) for n in Settings.model_fields]
    port = next(row for row in rows if "`CLEANCUT_PORT`" in row)
    assert "integer, 0 to 65535" in port and "`5000`" in port


def test_the_model_dir_default_is_described_not_this_machines_path() -> None:
    text = reference_markdown()
    assert "`$XDG_DATA_HOME/cleancut/models` (fallback `~/.local/share/cleancut/models`)" in text
    assert str(Path.home()) not in text


@pytest.mark.parametrize("name", ["url_fetch_enabled", "url_allow_hosts", "allow_anonymous",
                                  "metrics_public", "cors_origins", "trusted_proxies"])
def test_switches_that_weaken_security_carry_a_warning(name: str) -> None:
    text = reference_markdown()
    assert f"| `{env_var(name)}` ⚠️ |" in text
    assert f"> [!WARNING]\n> **`{env_var(name)}`**: " in text


# --- (b) every CLEANCUT_* name the project mentions is a setting -------------------------------
def _mentioning_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    for top in ("deploy", "src"):
        files += sorted(
            path for path in (ROOT / top).rglob("*")
            if path.is_file() and not any(part.endswith(".egg-info") or part == "__pycache__"
                                          for part in path.parts))
    return files


def test_every_cleancut_name_mentioned_is_a_setting() -> None:
    settings = {env_var(name) for name in Settings.model_fields}
    unknown: dict[str, set[str]] = {}
    for path in _mentioning_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for name in set(NAME.findall(text)):
            if name in settings or name in NOT_SETTINGS:
                continue
            if name.endswith("_") and any(s.startswith(name) for s in settings):
                continue  # a family written as CLEANCUT_URL_* or CLEANCUT_ACCESS_LOG_*
            unknown.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not unknown, f"not settings (a typo, or a removed setting still documented): {unknown}"


def test_the_allow_list_names_no_setting() -> None:
    assert not NOT_SETTINGS & {env_var(name) for name in Settings.model_fields}


# --- (c) every field is documented --------------------------------------------------------------
@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_description(name: str) -> None:
    description = Settings.model_fields[name].description
    assert description and description.strip(), f"{name}: add Field(description=...)"


# --- (d) booleans parse strictly ----------------------------------------------------------------
def test_the_boolean_settings_are_found() -> None:
    assert {"keep_large_buffers", "url_fetch_enabled", "allow_anonymous",
            "metrics_public"} <= set(BOOL_FIELDS)


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), (" True ", True), ("1", True),
    ("false", False), ("False", False), ("  0", False), ("0", False)])
def test_a_boolean_setting_takes_true_false_1_0(name: str, text: str, expected: bool) -> None:
    assert getattr(load(_env(**{env_var(name): text})), name) is expected


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "t", "f", "y", "n", "", " ", "2",
                                  "-1", "truee", "true false"])
def test_a_boolean_setting_refuses_anything_else(name: str, text: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        load(_env(**{env_var(name): text}))
    assert info.value.variable == env_var(name)
    assert env_var(name) in info.value.detail and "true, false, 1 or 0" in info.value.detail


# --- (e) one error, listing every problem -------------------------------------------------------
def test_load_reports_every_problem_at_once() -> None:
    env = _env(CLEANCUT_MAX_PIXELS="lots", CLEANCUT_PORT="70000", CLEANCUT_URL_FETCH_ENABLED="on",
               CLEANCUT_TRUSTED_PROXIES="10.0.0.0/8,proxy.example", CLEANCUT_LOG_LEVEL="loud")
    with pytest.raises(InvalidSetting) as info:
        load(env)
    error = info.value
    assert isinstance(error, CleancutError)
    assert (error.code, error.status, error.report) == ("invalid_setting", 400, False)
    assert error.variable == "CLEANCUT_MAX_PIXELS"  # the first, in the order of the reference
    assert error.detail.startswith("5 invalid settings: CLEANCUT_MAX_PIXELS: ")
    for name in ("CLEANCUT_MAX_PIXELS", "CLEANCUT_PORT", "CLEANCUT_URL_FETCH_ENABLED",
                 "CLEANCUT_TRUSTED_PROXIES", "CLEANCUT_LOG_LEVEL"):
        assert f"{name}: " in error.detail
    assert "'proxy.example' is not an IP address" in error.detail
    assert "Value error" not in error.detail
    assert error.detail.endswith("(see docs/settings.md)")
    assert error.to_dict()["variable"] == "CLEANCUT_MAX_PIXELS"


def test_one_problem_is_named_alone() -> None:
    with pytest.raises(InvalidSetting) as info:
        load(_env(CLEANCUT_WORKERS="-1"))
    assert info.value.variable == "CLEANCUT_WORKERS"
    assert info.value.detail.startswith("invalid setting: CLEANCUT_WORKERS: ")


def test_a_bad_api_key_is_never_quoted() -> None:
    short = "tooShortKey42"
    with pytest.raises(InvalidSetting) as info:
        load(_env(CLEANCUT_API_KEYS=f"ci:{short}", CLEANCUT_PORT="x"))
    assert info.value.variable == "CLEANCUT_PORT"
    assert "CLEANCUT_API_KEYS entry 1: a key must be at least 16" in info.value.detail
    assert "CLEANCUT_API_KEYS: CLEANCUT_API_KEYS" not in info.value.detail  # named once
    assert short not in info.value.detail and short not in str(info.value.__cause__)


def test_the_model_dir_default_comes_from_the_mapping_given() -> None:
    assert load({"XDG_DATA_HOME": "/data"}).model_dir == Path("/data/cleancut/models")
