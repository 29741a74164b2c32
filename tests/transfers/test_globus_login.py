"""``balsamd site globus-login`` as a user types it, Globus Auth answered by globus-sdk's own
testing responses: the URL asks the right consents, the code becomes a 0600 tokens file, and
no token is ever printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner, Result
from globus_sdk.testing import RegisteredResponse, load_response

from balsamd.cli import cli
from balsamd.site import init_site
from balsamd.transfers.globus_auth import TOKENS_FILE, TokenFile

CLIENT_ID = "0c1d2e3f-0000-4000-8000-00000000c11e"
SITE = "5e5e5e5e-0000-4000-8000-000000005173"
FAR = "fa4fa4fa-0000-4000-8000-0000000000fa"
GUEST = "9e9e9e9e-0000-4000-8000-00000000e9e9"
ACCESS = "LOGIN-ACCESS-5b6c7d-never-shown"
REFRESH = "LOGIN-REFRESH-8e9f0a-never-shown"
TRANSFER_ALL = "urn:globus:auth:scope:transfer.api.globus.org:all"


@pytest.fixture(autouse=True)
def globus_api() -> Iterator[None]:
    responses.start()
    yield
    responses.stop()
    responses.reset()


def make_site(tmp_path: Path, client_id: str = CLIENT_ID, endpoint: str = SITE) -> Path:
    root = init_site(tmp_path / "site", name="polaris").root
    settings = root / "settings.toml"
    text = settings.read_text().replace(
        '# far = "file:///data/far"', f'far = "globus://{FAR}/proj"\nguest = "globus://{GUEST}/shared"\n'
    )
    text = text.replace('client_id = ""\nendpoint = ""\n', f'client_id = "{client_id}"\nendpoint = "{endpoint}"\n'
                        f'path_map = {{ "{root}/data" = "/~/polaris/data" }}\n')  # fmt: skip
    settings.write_text(text)
    return root


def tokens_answer(**extra: object) -> None:
    RegisteredResponse(service="auth", method="POST", path="/v2/oauth2/token", json={
        "access_token": ACCESS, "refresh_token": REFRESH, "scope": TRANSFER_ALL, "expires_in": 172800,
        "token_type": "Bearer", "resource_server": "transfer.api.globus.org", "state": "_default",
        "other_tokens": [], **extra,
    }).add()  # fmt: skip


def login(site: Path, *args: str, code: str = "the-code-globus-shows", exit_code: int = 0) -> Result:
    result = CliRunner().invoke(
        cli, ["--site", str(site), "site", "globus-login", *args], input=f"{code}\n", prog_name="balsamd",
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert ACCESS not in result.output and REFRESH not in result.output
    return result


def shown_url(result: Result) -> urllib.parse.SplitResult:
    [line] = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("https://")]
    return urllib.parse.urlsplit(line)


def data_access(collection: str) -> str:
    return f"*https://auth.globus.org/scopes/{collection}/data_access"


def test_login_shows_the_consent_url_and_saves_the_tokens_private_to_the_owner(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    tokens_answer()
    old_umask = os.umask(0)  # the file is private whatever the umask
    try:
        result = login(site)
    finally:
        os.umask(old_umask)

    url = shown_url(result)
    query = urllib.parse.parse_qs(url.query)
    assert (url.netloc, url.path) == ("auth.globus.org", "/v2/oauth2/authorize")
    assert query["client_id"] == [CLIENT_ID]
    assert query["access_type"] == ["offline"]  # a refresh token: the daemon runs for weeks
    assert query["prefill_named_grant"] == ["balsamd site polaris"]
    [scope] = query["scope"]
    assert scope.startswith(f"{TRANSFER_ALL}[")
    assert sorted(scope[len(TRANSFER_ALL) + 1 : -1].split()) == sorted(data_access(c) for c in (SITE, FAR, GUEST))

    exchange = responses.calls[-1].request
    form = urllib.parse.parse_qs(exchange.body)
    assert form["grant_type"] == ["authorization_code"]
    assert (form["code"], form["client_id"]) == (["the-code-globus-shows"], [CLIENT_ID])
    assert "code_verifier" in form

    path = site / TOKENS_FILE
    assert result.stdout.endswith(f"Saved the site's Globus login to {path} (readable by you alone)\n")
    assert path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(path.read_text())
    assert {k: saved[k] for k in ("client_id", "scope", "access_token", "refresh_token")} == {
        "client_id": CLIENT_ID, "scope": TRANSFER_ALL, "access_token": ACCESS, "refresh_token": REFRESH,
    }  # fmt: skip
    assert saved["expires_at_seconds"] > 0
    assert sorted(p.name for p in site.iterdir() if "globus" in p.name) == [TOKENS_FILE]  # no temporary file left


def test_a_new_login_replaces_the_tokens_whole(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / TOKENS_FILE).write_text("old and longer than the new tokens file " * 20)
    (site / TOKENS_FILE).chmod(0o644)
    tokens_answer()
    login(site)
    assert TokenFile(site).load().refresh_token == REFRESH
    assert (site / TOKENS_FILE).stat().st_mode & 0o777 == 0o600


def test_a_collection_that_takes_no_data_access_scope_can_be_left_out(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    tokens_answer()
    result = login(site, "--without-data-access", GUEST.upper())
    [scope] = urllib.parse.parse_qs(shown_url(result).query)["scope"]
    assert GUEST not in scope and data_access(SITE) in scope and data_access(FAR) in scope


def test_without_a_client_id_the_error_says_where_to_register_one(tmp_path: Path) -> None:
    site = make_site(tmp_path, client_id="")
    result = login(site, exit_code=1)
    assert result.stdout == ""
    assert "[transfers.globus] client_id is empty in" in result.stderr
    assert "https://app.globus.org/settings/developers" in result.stderr
    assert len(responses.calls) == 0 and not (site / TOKENS_FILE).exists()


def test_a_site_without_its_own_collection_is_told_to_give_it(tmp_path: Path) -> None:
    site = make_site(tmp_path, endpoint="")
    tokens_answer()
    result = login(site)
    assert "note: [transfers.globus] endpoint is empty" in result.stdout
    assert SITE not in urllib.parse.parse_qs(shown_url(result).query)["scope"][0]


def test_a_refused_code_says_to_log_in_again_and_saves_nothing(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    load_response("auth.oauth2_exchange_code_for_tokens", case="invalid_grant")
    result = login(site, code="stale", exit_code=1)
    assert "Globus refused the code (401 invalid_grant): run `balsamd site globus-login` again" in result.stderr
    assert not (site / TOKENS_FILE).exists()


def test_an_answer_without_a_refresh_token_is_refused(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    load_response("auth.oauth2_exchange_code_for_tokens")  # the SDK's answer has no refresh token
    result = login(site, exit_code=1)
    assert "without a transfer refresh token" in result.stderr
    assert not (site / TOKENS_FILE).exists()


def test_without_globus_sdk_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    script = (
        "import sys; sys.modules['globus_sdk'] = None\n"
        "from balsamd.cli import cli\n"
        f"cli(['--site', {str(site)!r}, 'site', 'globus-login'], prog_name='balsamd')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "BALSAMD_SITE"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "globus-sdk, which is not installed: pip install 'balsamd[globus]'" in done.stderr
