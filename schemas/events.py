"""The platform events of contract v1 (CONTRACT.md) as strict, immutable pydantic models."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import (
    AccountId,
    CountryCode,
    CurrencyCode,
    EventTime,
    Identifier,
    IPAddress,
)

__all__ = [
    "EVENT_MODELS",
    "TOPIC_BY_TYPE",
    "AccountCreated",
    "AccountEvent",
    "BidAccepted",
    "BidSubmitted",
    "Connection",
    "ContractStarted",
    "Destination",
    "DocumentUploaded",
    "Event",
    "EventBase",
    "Geo",
    "IdentityVerified",
    "Instrument",
    "Login",
    "MarketplaceEvent",
    "PaymentMethodAdded",
    "Payout",
    "PayoutMethodChanged",
    "ProfileUpdated",
    "RatingGiven",
    "RouteHop",
    "SessionEvent",
    "ShippingAddressChanged",
]


_T = TypeVar("_T")


class _computed_once(Generic[_T]):
    """`functools.cached_property` without its lock: a value computed on first access and
    kept in the instance's `__dict__`, where later reads find it without calling this
    descriptor. Python 3.11's cached_property takes an RLock on every first access, which
    doubled what `occurred_ms` cost an event (docs/PERFORMANCE.md); an event is read by one
    thread, and two threads computing the same value would store the same value."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _computed_once[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object, owner: type | None = None) -> _T | _computed_once[_T]:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value
        return value


class _Strict(BaseModel):
    # Strict: no silent coercion ("12" is not 12); unknown fields are ignored so that
    # producers may add optional fields without breaking workers (CONTRACT.md).
    model_config = ConfigDict(
        strict=True, frozen=True, extra="ignore", ignored_types=(_computed_once,)
    )


class EventBase(_Strict):
    schema_version: Literal[1] = 1
    event_id: Identifier
    occurred_at: EventTime
    account_id: AccountId

    @_computed_once
    def occurred_ms(self) -> int:
        """`occurred_at` in epoch milliseconds (what every window counts in), computed once
        per event however many detectors read it."""
        return int(self.occurred_at.timestamp() * 1000)


class Geo(_Strict):
    country: CountryCode
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    city: str | None = None
    asn: int | None = Field(default=None, ge=0)
    as_org: str | None = None


class Login(EventBase):
    """`platform.logins`: a successful login, a failed one, or a logout."""

    type: Literal["login", "login_failed", "logout"]
    ip: IPAddress
    session_id: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    geo: Geo | None = None


class Connection(_Strict):
    src_port: int | None = Field(default=None, ge=0, le=65535)
    open_ports: tuple[Annotated[int, Field(ge=0, le=65535)], ...] = ()
    rdp_session: bool | None = None
    remote_tools: tuple[str, ...] = ()


class SessionEvent(EventBase):
    """`platform.sessions`: session telemetry; heartbeats arrive every 5-15 min while active."""

    type: Literal["session_start", "session_heartbeat", "session_end"]
    session_id: Identifier
    ip: IPAddress
    connection: Connection | None = None


class Destination(_Strict):
    fingerprint: Identifier
    holder_name: str | None = None
    country: CountryCode | None = None
    institution: str | None = None


class RouteHop(_Strict):
    name: str = Field(min_length=1)
    country: CountryCode


class Payout(EventBase):
    """`platform.payouts`: money leaving the platform."""

    type: Literal["payout_requested", "payout_sent"]
    payout_id: Identifier
    amount: Decimal = Field(gt=0, description='decimal string, e.g. "1250.00"')
    currency: CurrencyCode
    method: Literal["bank", "paypal", "payoneer", "wise", "crypto", "other"]
    destination: Destination
    route: tuple[RouteHop, ...] = ()


class AccountCreated(EventBase):
    type: Literal["account_created"]
    role: Literal["freelancer", "client"]
    declared_country: CountryCode | None = None
    declared_timezone: str | None = None


class IdentityVerified(EventBase):
    type: Literal["identity_verified"]
    legal_name: str = Field(min_length=1)
    document_country: CountryCode
    address_fingerprint: Identifier


class ProfileUpdated(EventBase):
    type: Literal["profile_updated"]
    declared_country: CountryCode | None = None
    declared_timezone: str | None = None
    display_name: str | None = None


class PayoutMethodChanged(EventBase):
    type: Literal["payout_method_changed"]
    destination: Destination


class ShippingAddressChanged(EventBase):
    type: Literal["shipping_address_changed"]
    address_fingerprint: Identifier
    country: CountryCode


class DocumentUploaded(EventBase):
    type: Literal["document_uploaded"]
    document_kind: Literal["bid", "invoice", "contract", "id", "resume", "other"]
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    text: str | None = None


class Instrument(_Strict):
    """The means an account pays with (contract 1.1): its fingerprint is comparable with
    payout destination fingerprints (the same PayPal account, card or IBAN on both sides)."""

    fingerprint: Identifier
    holder_name: str | None = None
    method: Literal["bank", "card", "paypal", "payoneer", "wise", "crypto", "other"]
    country: CountryCode | None = None


class PaymentMethodAdded(EventBase):
    """A client adds a means of funding work (a freelancer may add one too): contract 1.1."""

    type: Literal["payment_method_added"]
    instrument: Instrument


class BidSubmitted(EventBase):
    type: Literal["bid_submitted"]
    job_id: Identifier
    text: str | None = None


class BidAccepted(EventBase):
    """The event's `account_id` is the client who accepted."""

    type: Literal["bid_accepted"]
    job_id: Identifier
    #: The bidder whose bid was accepted (contract 1.1; optional for older producers).
    freelancer_id: AccountId | None = None


class ContractStarted(EventBase):
    type: Literal["contract_started"]
    contract_id: Identifier
    client_id: AccountId
    freelancer_id: AccountId


class RatingGiven(EventBase):
    type: Literal["rating_given"]
    contract_id: Identifier
    to_account_id: AccountId
    score: int = Field(ge=1, le=5)


AccountEvent = (
    AccountCreated
    | IdentityVerified
    | ProfileUpdated
    | PayoutMethodChanged
    | ShippingAddressChanged
    | DocumentUploaded
    | PaymentMethodAdded
)
MarketplaceEvent = BidSubmitted | BidAccepted | ContractStarted | RatingGiven

Event = Annotated[
    Login | SessionEvent | Payout | AccountEvent | MarketplaceEvent,
    Field(discriminator="type"),
]

# One model per `type`, and the topic each type is published to.
EVENT_MODELS: dict[str, type[EventBase]] = {
    "login": Login,
    "login_failed": Login,
    "logout": Login,
    "session_start": SessionEvent,
    "session_heartbeat": SessionEvent,
    "session_end": SessionEvent,
    "payout_requested": Payout,
    "payout_sent": Payout,
    "account_created": AccountCreated,
    "identity_verified": IdentityVerified,
    "profile_updated": ProfileUpdated,
    "payout_method_changed": PayoutMethodChanged,
    "shipping_address_changed": ShippingAddressChanged,
    "document_uploaded": DocumentUploaded,
    "payment_method_added": PaymentMethodAdded,
    "bid_submitted": BidSubmitted,
    "bid_accepted": BidAccepted,
    "contract_started": ContractStarted,
    "rating_given": RatingGiven,
}

TOPIC_BY_TYPE: dict[str, str] = {
    **dict.fromkeys(("login", "login_failed", "logout"), "platform.logins"),
    **dict.fromkeys(("session_start", "session_heartbeat", "session_end"), "platform.sessions"),
    **dict.fromkeys(("payout_requested", "payout_sent"), "platform.payouts"),
    **dict.fromkeys(
        (
            "account_created",
            "identity_verified",
            "profile_updated",
            "payout_method_changed",
            "shipping_address_changed",
            "document_uploaded",
            "payment_method_added",
        ),
        "platform.accounts",
    ),
    **dict.fromkeys(
        ("bid_submitted", "bid_accepted", "contract_started", "rating_given"),
        "platform.marketplace",
    ),
}
