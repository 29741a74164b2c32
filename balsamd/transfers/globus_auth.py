"""A site's Globus credentials: the login that gets them, the file that keeps them, and the
authorizer the transfer backend sends them with.

``balsamd site globus-login`` runs Globus's native-app flow once and saves the transfer tokens in
the site directory (``globus-tokens.json``, mode 0600 from its first byte, replaced whole); the
daemon reads them back into a refresh-token authorizer that saves every renewed access token.
globus-sdk is optional: it is imported only inside these functions, so balsamd runs without it
until a site uses Globus.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from balsamd.config import TransferSettings
from balsamd.modes import PRIVATE, replace_file
from balsamd.transfers.backend import TransferError
from balsamd.transfers.locations import parse_location

if TYPE_CHECKING:
    import globus_sdk

TOKENS_FILE = "globus-tokens.json"
TRANSFER_SERVER = "transfer.api.globus.org"
INSTALL = "pip install 'balsamd[globus]'"
SDK_REQUIREMENT = "globus-sdk>=4.0,<5"  # as pyproject.toml's globus extra
LOGIN = "balsamd site globus-login"
REGISTER_URL = "https://app.globus.org/settings/developers"


@contextlib.contextmanager
def needs_sdk() -> Iterator[None]:
    """Turn a missing globus-sdk, imported inside the block, into a TransferError saying how to
    install it (any other import error is a bug of the installation, raised as it is)."""
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "globus_sdk":
            raise
        raise TransferError(
            f"Globus transfers need globus-sdk, which is not installed: {INSTALL} into the Python that runs "
            f"balsamd (for balsamd.pyz: python3 -m pip install --user '{SDK_REQUIREMENT}')"
        ) from None


def api_error(exc: globus_sdk.GlobusAPIError) -> str:
    """Globus's refusal as one line: its status, code and message, from its API's errors or
    from OAuth's (``error``, ``error_description``); never a request's header."""
    body = exc.raw_json or {}
    code = exc.code or body.get("error") or "error"
    message = exc.message or body.get("error_description") or ""
    return f"{exc.http_status} {code}: {message}".rstrip(": ")[:500]


class StoredTokens(msgspec.Struct, frozen=True, kw_only=True):
    """The transfer tokens of one login, and the native app's client id they belong to (a
    refresh token works only with the client that got it)."""

    client_id: str
    scope: str
    access_token: str
    refresh_token: str
    expires_at_seconds: int

    def __repr__(self) -> str:  # a token never reaches a log or a traceback through a repr
        return f"StoredTokens(client_id={self.client_id!r}, scope={self.scope!r})"


# one save at a time in this process: the daemon's transfer threads, each with an authorizer of
# its own, may renew the access token at once, and replace_file's temporary name is per process
_SAVING = threading.Lock()


class TokenFile:
    """``globus-tokens.json`` in a site directory."""

    def __init__(self, site_dir: Path) -> None:
        self.path = site_dir / TOKENS_FILE

    def save(self, tokens: StoredTokens) -> None:
        with _SAVING:
            replace_file(self.path, msgspec.json.encode(tokens), PRIVATE.file)

    def load(self) -> StoredTokens:
        """The saved tokens, or TransferError saying to log in (none, or a file that is not ours
        alone, or not one of ours)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TransferError(f"this site has no Globus login yet ({self.path} is missing): run `{LOGIN}`") from None
        except OSError as exc:
            raise TransferError(f"{self.path} cannot be read ({exc.strerror}): run `{LOGIN}` again") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                raise TransferError(
                    f"{self.path} is not yours alone (mode {stat.S_IMODE(st.st_mode):04o}): others may have read "
                    f"its tokens; remove it, revoke balsamd's consent at https://app.globus.org/account/consents "
                    f"and run `{LOGIN}` again"
                )
            data = f.read()
        try:
            return msgspec.json.decode(data, type=StoredTokens)
        except msgspec.DecodeError:
            raise TransferError(f"{self.path} holds no Globus tokens balsamd can read: run `{LOGIN}` again") from None


def from_token_data(client_id: str, token: dict[str, Any], refresh_token: str = "") -> StoredTokens:
    """StoredTokens from one resource server's entry of a Globus token response (a renewal may
    leave out the refresh token, which then stays the one given)."""
    return StoredTokens(
        client_id=client_id, scope=token["scope"], access_token=token["access_token"],
        refresh_token=token.get("refresh_token") or refresh_token, expires_at_seconds=int(token["expires_at_seconds"]),
    )  # fmt: skip


def transfer_authorizer(client_id: str, site_dir: Path) -> globus_sdk.RefreshTokenAuthorizer:
    """An authorizer for Globus Transfer from the site's saved login; each renewed access token
    is saved back, so a restart need not renew it again."""
    with needs_sdk():
        import globus_sdk
    if not client_id:
        raise TransferError(
            f"[transfers.globus] client_id is empty in settings.toml: register a native app at {REGISTER_URL}, "
            f"give its client id there, and run `{LOGIN}`"
        )
    tokens = TokenFile(site_dir)
    stored = tokens.load()
    if stored.client_id != client_id:
        raise TransferError(
            f"the site's Globus login was made with client id {stored.client_id}, and settings.toml now names "
            f"{client_id}: run `{LOGIN}` again"
        )

    def saved(response: globus_sdk.OAuthRefreshTokenResponse) -> None:
        token = response.by_resource_server[TRANSFER_SERVER]
        tokens.save(from_token_data(client_id, token, stored.refresh_token))

    return globus_sdk.RefreshTokenAuthorizer(
        stored.refresh_token, globus_sdk.NativeAppAuthClient(client_id),
        access_token=stored.access_token, expires_at=stored.expires_at_seconds, on_refresh=saved,
    )  # fmt: skip


def login_collections(settings: TransferSettings) -> list[str]:
    """The collections a site's transfers reach: its own and each Globus location's."""
    found = {settings.globus.endpoint} if settings.globus.endpoint else set()
    for url in settings.locations.values():
        location = parse_location(url)
        if location.scheme == "globus":
            found.add(location.endpoint)
    return sorted(found)


def login_scope(collections: Iterable[str]) -> globus_sdk.Scope:
    """Globus Transfer's scope, with a data_access consent for each collection: a GCS v5 mapped
    collection lets Transfer in only with one (optional, as the SDK's own
    ``add_app_data_access_scope`` asks for it)."""
    with needs_sdk():
        from globus_sdk.scopes import GCSCollectionScopes, TransferScopes
    return TransferScopes.all.with_dependencies(
        [GCSCollectionScopes(c).data_access.with_optional(True) for c in sorted(set(collections))]
    )


class NativeLogin:
    """One run of the native-app flow: the user opens ``url``, logs in and consents, and pastes
    back the code Globus shows; ``finish`` trades it for tokens and saves them."""

    def __init__(self, client_id: str, collections: Iterable[str], grant_name: str) -> None:
        with needs_sdk():
            import globus_sdk
        self.client_id = client_id
        self._client = globus_sdk.NativeAppAuthClient(client_id)
        self._client.oauth2_start_flow(
            requested_scopes=login_scope(collections), refresh_tokens=True, prefill_named_grant=grant_name
        )
        self.url: str = self._client.oauth2_get_authorize_url()

    def finish(self, code: str, site_dir: Path) -> Path:
        """Save the tokens the code is worth; returns the file they are in."""
        import globus_sdk

        try:
            response = self._client.oauth2_exchange_code_for_tokens(code.strip())
        except globus_sdk.GlobusAPIError as exc:
            raise TransferError(
                f"Globus refused the code ({api_error(exc)}): run `{LOGIN}` again and paste the code "
                "Globus shows once you have consented"
            ) from None
        except globus_sdk.NetworkError as exc:
            raise TransferError(f"Globus could not be reached ({type(exc).__name__}): run `{LOGIN}` again") from None
        token = response.by_resource_server.get(TRANSFER_SERVER)
        if token is None or not token.get("refresh_token"):
            raise TransferError("Globus answered the login without a transfer refresh token; run the login again")
        tokens = TokenFile(site_dir)
        tokens.save(from_token_data(self.client_id, token))
        return tokens.path
