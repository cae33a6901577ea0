"""Accounts, logins (argon2 hashes, signed short-lived tokens, refresh, logout), API keys and the login limit."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, Table, delete, func, or_, select, update

from api.schemas import ROLES
from api.services.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from api.services.scope import AuthKind, Principal, principal_for
from commhub.community import Community
from commhub.config import ApiConfig
from hub.alerts.models import ApiKey, LoginFailure, Setting, User, UserSession
from hub.alerts.sql import insert

log = logging.getLogger(__name__)

U = cast(Table, User.__table__)
S = cast(Table, UserSession.__table__)
K = cast(Table, ApiKey.__table__)
LF = cast(Table, LoginFailure.__table__)
ST = cast(Table, Setting.__table__)
KEY_PREFIX = "chk_"
_ALG = "HS256"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Accounts:
    """Accounts and credentials in the alert store's database."""

    def __init__(self, engine: Engine, community: Community, cfg: ApiConfig,
                 clock: Callable[[], float] = time.time, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine
        self.community = community
        self.cfg = cfg
        self.clock = clock
        self.hasher = PasswordHasher(time_cost=cfg.argon2_time_cost, memory_cost=cfg.argon2_memory_kib)
        self._key: str | None = None
        self._dummy_hash: str | None = None

    @property
    def _dummy(self) -> str:
        # Verifying against this when the user does not exist keeps the timing of both answers alike.
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        return self._dummy_hash

    # ---- accounts -----------------------------------------------------------------------------------

    def add(self, username: str, role: str, password: str, staff_id: str | None = None,
            buildings: Sequence[str] | None = None) -> dict[str, Any]:
        """Create an account; Conflict when the username is taken."""
        self._check(role, staff_id, buildings)
        now = self.clock()
        row = {"username": username, "role": role, "password_hash": self.hasher.hash(password),
               "staff_id": staff_id, "buildings": list(buildings) if buildings is not None else None,
               "disabled": False, "created_at": now, "updated_at": now}
        with self.engine.begin() as conn:
            stmt = insert(conn, U).values(**row).on_conflict_do_nothing(index_elements=["username"])
            if not conn.execute(stmt.returning(U.c.username)).first():
                raise Conflict(f"user {username!r} already exists")
        return row

    def _check(self, role: str, staff_id: str | None, buildings: Sequence[str] | None) -> None:
        if role not in ROLES:
            raise Invalid(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        staff = {s.id: s for s in self.community.staff}
        if staff_id is not None and staff_id not in staff:
            raise Invalid(f"no staff {staff_id!r} in the community roster")
        if role == "grid_worker" and (staff_id is None or staff[staff_id].role != "grid_worker"):
            raise Invalid("a grid_worker account needs staff_id of a grid worker in the roster (their cells)")
        known = {b.id for g in self.community.grids for b in g.buildings}
        for b in buildings or ():
            if b not in known:
                raise Invalid(f"unknown building {b!r}")

    def get(self, username: str) -> dict[str, Any] | None:
        """One account row."""
        with self.reader.connect() as conn:
            row = conn.execute(select(U).where(U.c.username == username)).mappings().first()
            return dict(row) if row else None

    def users(self) -> list[dict[str, Any]]:
        """Every account, by name."""
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(select(U).order_by(U.c.username)).mappings()]

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (revoking every login) or enable an account."""
        with self.engine.begin() as conn:
            if not conn.execute(update(U).where(U.c.username == username)
                                .values(disabled=disabled, updated_at=self.clock())).rowcount:
                raise NotFound(f"no user {username!r}")
            if disabled:
                conn.execute(update(S).where(S.c.username == username, S.c.revoked_at.is_(None))
                             .values(revoked_at=self.clock()))

    def reset_password(self, username: str, password: str) -> None:
        """Set a new password and end the account's logins."""
        with self.engine.begin() as conn:
            if not conn.execute(update(U).where(U.c.username == username)
                                .values(password_hash=self.hasher.hash(password), updated_at=self.clock())).rowcount:
                raise NotFound(f"no user {username!r}")
            conn.execute(update(S).where(S.c.username == username, S.c.revoked_at.is_(None))
                         .values(revoked_at=self.clock()))

    # ---- logins -------------------------------------------------------------------------------------

    def _signing_key(self) -> str:
        # Generated at first start and kept in SQL, so every API process signs and checks with the same key.
        if self._key is None:
            with self.engine.begin() as conn:
                conn.execute(insert(conn, ST).values(key="jwt_key", value=secrets.token_hex(32))
                             .on_conflict_do_nothing(index_elements=["key"]))
                self._key = str(conn.execute(select(ST.c.value).where(ST.c.key == "jwt_key")).scalar_one())
        return self._key

    def check_limit(self, username: str, address: str) -> None:
        """RateLimited when this username or address failed too often within the window."""
        since = self.clock() - self.cfg.login_window_s
        with self.reader.connect() as conn:
            for col, value in ((LF.c.username, username), (LF.c.address, address)):
                n, first = conn.execute(select(func.count(), func.min(LF.c.at))
                                        .where(col == value, LF.c.at > since)).one()
                # An address may try a few usernames more than one username may be tried.
                limit = self.cfg.login_max_failures * (4 if col is LF.c.address else 1)
                if n >= limit:
                    retry = max(1, int(first + self.cfg.login_window_s - self.clock()) + 1)
                    raise RateLimited(f"too many failed logins; try again in {retry} s", retry)

    def login(self, username: str, password: str, address: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check the password (rate-limited) and open a session: (user row, token response)."""
        self.check_limit(username, address)
        user = self.get(username)
        ok = False
        try:
            ok = self.hasher.verify(user["password_hash"] if user and user["password_hash"] else self._dummy,
                                    password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None or user["disabled"]:
            with self.engine.begin() as conn:
                conn.execute(insert(conn, LF).values(username=username[:64], address=address[:64], at=self.clock()))
            raise Unauthorized("wrong username or password, or the account is disabled")
        with self.engine.begin() as conn:
            conn.execute(delete(LF).where(LF.c.username == username))
        return user, self._open_session(username)

    def _open_session(self, username: str) -> dict[str, Any]:
        sid, refresh = secrets.token_hex(16), secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(insert(conn, S).values(id=sid, username=username, refresh_hash=_sha(refresh), created_at=now,
                                                expires_at=now + self.cfg.refresh_ttl_s, revoked_at=None))
        return self._tokens(username, sid, refresh)

    def _tokens(self, username: str, sid: str, refresh: str) -> dict[str, Any]:
        now = self.clock()
        ttl = int(self.cfg.access_ttl_s)
        access = jwt.encode({"sub": username, "sid": sid, "iat": int(now), "exp": int(now) + ttl},
                            self._signing_key(), algorithm=_ALG)
        return {"access_token": access, "token_type": "bearer", "expires_in": ttl, "refresh_token": refresh}

    def refresh(self, refresh_token: str) -> tuple[str, dict[str, Any]]:
        """A new access token and a new refresh token (the old one stops working): (username, tokens)."""
        new = secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(select(S.c.id, S.c.username).join(U, U.c.username == S.c.username)
                               .where(S.c.refresh_hash == _sha(refresh_token), S.c.revoked_at.is_(None),
                                      S.c.expires_at > now, U.c.disabled.is_(False))).first()
            if row is None:
                raise Unauthorized("the refresh token is unknown, expired or revoked")
            conn.execute(update(S).where(S.c.id == row[0]).values(refresh_hash=_sha(new)))
        return str(row[1]), self._tokens(str(row[1]), str(row[0]), new)

    def logout(self, sid: str) -> None:
        """Revoke one session: its access and refresh tokens stop working at once."""
        with self.engine.begin() as conn:
            conn.execute(update(S).where(S.c.id == sid, S.c.revoked_at.is_(None)).values(revoked_at=self.clock()))

    def from_token(self, token: str) -> tuple[Principal, str | None]:
        """The principal of a bearer credential (access token or API key), and its session id; or Unauthorized."""
        if token.startswith(KEY_PREFIX):
            return self.from_api_key(token), None
        try:
            claims = jwt.decode(token, self._signing_key(), algorithms=[_ALG], options={"require": ["exp", "sid"]},
                                leeway=0)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired; refresh it") from None
        except jwt.PyJWTError:
            raise Unauthorized("the access token is not valid") from None
        with self.reader.connect() as conn:
            row = conn.execute(select(U).join(S, S.c.username == U.c.username)
                               .where(S.c.id == str(claims["sid"]), S.c.revoked_at.is_(None),
                                      S.c.expires_at > self.clock(), U.c.username == str(claims.get("sub")),
                                      U.c.disabled.is_(False))).mappings().first()
        if row is None:
            raise Unauthorized("the login has ended (logged out, disabled or expired)")
        return principal_for(dict(row), self.community, "user"), str(claims["sid"])

    # ---- API keys -----------------------------------------------------------------------------------

    def add_key(self, username: str, name: str) -> dict[str, Any]:
        """A new key for an account; the secret is only in the returned row."""
        if self.get(username) is None:
            raise NotFound(f"no user {username!r}")
        kid, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = f"{KEY_PREFIX}{kid}_{secret}"
        row = {"id": kid, "username": username, "name": name, "key_hash": _sha(key), "created_at": self.clock(),
               "revoked_at": None}
        with self.engine.begin() as conn:
            conn.execute(insert(conn, K).values(**row))
        return {**row, "key": key}

    def keys(self, username: str | None = None) -> list[dict[str, Any]]:
        """API keys (without secrets)."""
        stmt = select(K).order_by(K.c.created_at)
        if username:
            stmt = stmt.where(K.c.username == username)
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def revoke_key(self, kid: str) -> None:
        """Revoke a key."""
        with self.engine.begin() as conn:
            if not conn.execute(update(K).where(K.c.id == kid, K.c.revoked_at.is_(None))
                                .values(revoked_at=self.clock())).rowcount:
                raise NotFound(f"no active API key {kid!r}")

    def from_api_key(self, key: str, kind: AuthKind = "api_key") -> Principal:
        """The principal of an API key, or Unauthorized."""
        parts = key[len(KEY_PREFIX):].split("_", 1)
        if len(parts) != 2 or not parts[0] or len(key) > 200:
            raise Unauthorized("the API key is not valid")
        with self.reader.connect() as conn:
            row = conn.execute(select(U, K.c.key_hash).join(K, K.c.username == U.c.username)
                               .where(K.c.id == parts[0], K.c.revoked_at.is_(None),
                                      or_(U.c.disabled.is_(False), U.c.disabled.is_(None)))).mappings().first()
        if row is None or not hmac.compare_digest(str(row["key_hash"]), _sha(key)):
            raise Unauthorized("the API key is not valid")
        return principal_for(dict(row), self.community, kind)
