"""A polite, SSRF-safe HTTP fetcher for pages, feeds, sitemaps and robots.txt (httpx, synchronous).

Polite: a User-Agent naming the project, robots.txt obeyed (RFC 9309: a 4xx robots.txt allows all,
a 5xx or unreachable one disallows all), a pause between requests to one host, conditional GET,
retries with back-off on 429/5xx honouring Retry-After. Safe: http(s) only, timeouts, a size cap,
redirects followed by hand (bounded, each hop checked again), and no loopback, private, link-local or
reserved address, checked after DNS resolution and again by the connection itself (which connects to
the address it checked), unless allowed.
Every failure is a `FetchError` whose message is the reason a summary shows.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
import urllib.robotparser
from dataclasses import dataclass, field
from typing import Protocol, Self
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from index.errors import HoidapError

USER_AGENT_TOKEN = "hoidap"
USER_AGENT = "hoidap/0.1 (+https://github.com/hoidap/hoidap; Vietnamese news Q&A bot)"
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_RETRY_AFTER = 60.0  # a server asking for longer is not waited for: the item is skipped, retried next sync


class FetchError(HoidapError):
    """A URL could not be fetched; the message is the reason, for the run's summary."""

    def __init__(self, message: str, *, vi: str | None = None, status: int | None = None) -> None:
        super().__init__(message, vi=vi)
        self.status = status


class AddressRefusedError(FetchError):
    """The URL leads to a loopback, private, link-local or reserved address."""


@dataclass(frozen=True)
class FetchPolicy:
    """How the fetcher behaves; built from the settings at the edge."""

    timeout: float = 20.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    host_delay: float = 1.0
    retries: int = 2
    backoff: float = 1.0
    allow_private: bool = False
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class Fetched:
    """One response: the final URL after redirects, and the validators for the next conditional GET."""

    url: str
    status: int
    content_type: str
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        """The body decoded with the declared charset, else UTF-8 (replacing undecodable bytes)."""
        encoding = _charset(self.content_type) or "utf-8"
        try:
            return self.body.decode(encoding, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


class RobotsCache(Protocol):
    """Keeps each site's robots.txt between runs, so checking it again is a conditional request."""

    def cached_robots(self, origin: str) -> tuple[str, str | None, str | None] | None:
        """(text, etag, last_modified) of the robots.txt last read from `origin`, if any."""
        ...

    def store_robots(self, origin: str, text: str, etag: str | None, last_modified: str | None) -> None: ...


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Connects only to public addresses: resolves the host itself and connects to the address it checked.

    Checking the name before the request is not enough: DNS may answer differently when httpx resolves
    it again (DNS rebinding). Here the address checked is the address connected to; TLS still verifies
    the certificate against the host name, which httpcore passes on separately.
    """

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise httpcore.ConnectError(f"unknown host {host}") from error
        address = str(infos[0][4][0])
        for info in infos:
            _refuse_private(str(info[4][0]), f"{host}:{port}")
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


def _transport(policy: FetchPolicy) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport()
    if not policy.allow_private:
        # httpx has no public hook for the connecting backend; its pool takes one (httpcore's public API).
        transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                                  network_backend=_PublicOnlyBackend())
    return transport


@dataclass
class _HostState:
    robots: urllib.robotparser.RobotFileParser | None = None
    sitemaps: list[str] = field(default_factory=list)
    last_request: float = 0.0


class Fetcher:
    """Fetches URLs one at a time, remembering each host's robots.txt and when it was last asked."""

    def __init__(self, policy: FetchPolicy, *, robots_cache: RobotsCache | None = None,
                 transport: httpx.BaseTransport | None = None, sleep=time.sleep, clock=time.monotonic) -> None:
        self.policy = policy
        self._robots_cache = robots_cache
        self.requests: list[str] = []  # every URL requested, in order (robots.txt included), for summaries
        self._sleep = sleep
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}
        self._client = httpx.Client(
            transport=transport or _transport(policy), follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(policy.timeout), headers={"User-Agent": policy.user_agent},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `url` (conditionally when validators are given), following redirects; raises FetchError."""
        seen: list[str] = []
        current = url
        for _ in range(self.policy.max_redirects + 1):
            self._check_url(current)
            if not self.allowed_by_robots(current):
                raise FetchError(f"disallowed by robots.txt: {current}",
                                 vi=f"robots.txt không cho phép: {current}")
            seen.append(current)
            response = self._request(current, etag, last_modified)
            if response.status in _REDIRECT_STATUSES:
                location = response.location
                if not location:
                    raise FetchError(f"redirect without a Location from {current}",
                                     vi=f"chuyển hướng không có Location từ {current}")
                current = urljoin(current, location)
                if current in seen:
                    raise FetchError(f"redirect loop at {current}", vi=f"chuyển hướng lặp vòng tại {current}")
                continue
            return response
        raise FetchError(f"more than {self.policy.max_redirects} redirects from {url}",
                         vi=f"quá {self.policy.max_redirects} lần chuyển hướng từ {url}")

    def sitemaps_of(self, url: str) -> list[str]:
        """The `Sitemap:` lines of the robots.txt of `url`'s host."""
        self.allowed_by_robots(url)
        return list(self._host(url).sitemaps)

    def allowed_by_robots(self, url: str) -> bool:
        state = self._host(url)
        if state.robots is None:
            state.robots, state.sitemaps = self._read_robots(url)
        return state.robots.can_fetch(USER_AGENT_TOKEN, url)

    # --- one request ---

    def _request(self, url: str, etag: str | None, last_modified: str | None) -> Fetched:
        headers = {"Accept": "text/html,application/xhtml+xml,application/rss+xml,application/atom+xml,"
                             "application/feed+json,application/xml;q=0.9,*/*;q=0.5"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for attempt in range(self.policy.retries + 1):
            self._wait_turn(url)
            fetched, retry_after = self._attempt(url, headers)
            if fetched.status not in _RETRIED_STATUSES:
                return fetched
            if attempt == self.policy.retries or (retry_after or 0) > _MAX_RETRY_AFTER:
                break
            self._sleep(retry_after if retry_after is not None else self.policy.backoff * 2**attempt)
        raise FetchError(f"HTTP {fetched.status} from {url}", vi=f"lỗi HTTP {fetched.status} từ {url}",
                         status=fetched.status)

    def _attempt(self, url: str, headers: dict[str, str]) -> tuple[Fetched, float | None]:
        self.requests.append(url)
        deadline = self._clock() + self.policy.timeout
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code in _REDIRECT_STATUSES:
                    return Fetched(url, response.status_code, "", b"",
                                   location=response.headers.get("location")), None
                body = b""
                if response.status_code == 200:
                    body = self._read_body(response, url, deadline)
                elif response.status_code not in _RETRIED_STATUSES and response.status_code != 304:
                    raise FetchError(_status_reason(response.status_code, url),
                                     vi=f"lỗi HTTP {response.status_code} từ {url}", status=response.status_code)
                return Fetched(
                    url=url, status=response.status_code,
                    content_type=response.headers.get("content-type", ""), body=body,
                    etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"),
                ), _retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self.policy.timeout:g} s: {url}",
                             vi=f"quá thời gian chờ {self.policy.timeout:g} giây: {url}") from None
        except httpx.ConnectError as error:
            reason = "TLS certificate or handshake failed" if "SSL" in str(error) or "certificate" in str(error) \
                else "cannot connect"
            raise FetchError(f"{reason}: {url} ({error})", vi=f"không kết nối được: {url} ({error})") from None
        except httpx.HTTPError as error:
            raise FetchError(f"network error: {url} ({error})", vi=f"lỗi mạng: {url} ({error})") from None

    def _read_body(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise self._too_large(url)
        parts: list[bytes] = []
        size = 0
        for part in response.iter_bytes():
            size += len(part)
            if size > self.policy.max_bytes:
                raise self._too_large(url)
            if self._clock() > deadline:  # a server trickling bytes would otherwise never time out
                raise httpx.ReadTimeout("body not complete in time")
            parts.append(part)
        return b"".join(parts)

    def _too_large(self, url: str) -> FetchError:
        limit = self.policy.max_bytes / 1_000_000
        return FetchError(f"larger than {limit:g} MB: {url}", vi=f"lớn hơn {limit:g} MB: {url}")

    def _wait_turn(self, url: str) -> None:
        state = self._host(url)
        pause = state.last_request + self.policy.host_delay - self._clock()
        if pause > 0:
            self._sleep(pause)
        state.last_request = self._clock()

    # --- safety ---

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"not an http(s) URL: {url}", vi=f"không phải URL http(s): {url}")
        if self.policy.allow_private:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise FetchError(f"unknown host {parts.hostname}", vi=f"không tìm thấy máy chủ {parts.hostname}") from None
        for info in infos:
            _refuse_private(str(info[4][0]), url)

    # --- robots.txt ---

    def _host(self, url: str) -> _HostState:
        parts = urlsplit(url)
        return self._hosts.setdefault(f"{parts.scheme}://{parts.netloc}".lower(), _HostState())

    def _read_robots(self, url: str) -> tuple[urllib.robotparser.RobotFileParser, list[str]]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        parser = urllib.robotparser.RobotFileParser(f"{origin}/robots.txt")
        self._host(url).robots = _ALLOW_ALL  # robots.txt itself, and its redirects, may be fetched
        cached = self._robots_cache.cached_robots(origin) if self._robots_cache else None
        try:
            fetched = self.get(f"{origin}/robots.txt", etag=cached[1] if cached else None,
                               last_modified=cached[2] if cached else None)
        except AddressRefusedError:
            self._host(url).robots = None
            raise
        except FetchError as error:
            if error.status is not None and 400 <= error.status < 500 and error.status != 429:
                parser.parse([])
            else:
                parser.disallow_all = True
            return parser, []
        if fetched.not_modified and cached:
            text = cached[0]
        else:
            text = fetched.text()
            if self._robots_cache:
                self._robots_cache.store_robots(origin, text, fetched.etag, fetched.last_modified)
        lines = text.splitlines()
        parser.parse(lines)
        return parser, [line.split(":", 1)[1].strip() for line in lines
                        if line.lower().startswith("sitemap:") and line.split(":", 1)[1].strip()]


class _AllowAll(urllib.robotparser.RobotFileParser):
    def can_fetch(self, useragent: str, url: str) -> bool:
        return True


_ALLOW_ALL = _AllowAll()


def _refuse_private(address: str, url: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise AddressRefusedError(
            f"refused: {url} resolves to the non-public address {ip} (set HOIDAP_FETCH_ALLOW_PRIVATE=true "
            "to allow loopback and private networks)",
            vi=f"từ chối: {url} trỏ tới địa chỉ không công khai {ip} (đặt HOIDAP_FETCH_ALLOW_PRIVATE=true "
               "để cho phép mạng nội bộ)")


def _status_reason(status: int, url: str) -> str:
    meaning = {404: "not found", 410: "gone", 401: "needs a login", 403: "forbidden", 451: "unavailable for legal reasons"}
    return f"HTTP {status}{' ' + meaning[status] if status in meaning else ''} from {url}"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
