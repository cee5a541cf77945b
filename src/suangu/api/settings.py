"""Settings of an API process (Pydantic, validated once at start)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from suangu.core.lifecycle import DEFAULT_FIRM_SLOTS
from suangu.core.metering import CLOCK_TOLERANCE_S, DEFAULT_MAX_PUE
from suangu.core.types import TimeGrid


class ApiSettings(BaseModel):
    """What the API needs besides the database and the clock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Unix seconds at which slot 0 of the market's time grid starts.
    grid_epoch: int = Field(default=1_767_225_600, ge=0)  # 2026-01-01T00:00:00Z
    slot_seconds: int = Field(default=3600, ge=3600)
    #: Slots one clearing covers when the operator does not say.
    horizon_slots: int = Field(default=24, ge=1, le=24 * 14)
    #: The exchange fee until the operator sets one, basis points (300 = 3%).
    default_fee_bp: int = Field(default=300, ge=0, le=10_000)
    #: The clearings' time preference, fen per GPU-hour per slot of delay
    #: (:attr:`suangu.core.types.Market.delay_fen`): among equally good slots the earliest
    #: wins. 0: none.
    delay_fen: int = Field(default=0, ge=0, le=10_000)
    #: How long a clearing's hold on a buyer's money lasts (0 = until settled).
    hold_timeout_s: int = Field(default=0, ge=0)
    #: Run the clearing loop (:mod:`suangu.api.scheduler`) in this process's lifespan.
    clearing_loop: bool = False
    #: Seconds between two clearings of the loop (default: one slot); boundaries are counted
    #: from ``grid_epoch``.
    clearing_interval_s: int | None = Field(default=None, ge=60)
    #: How long after a lease's slot ends the loop waits for its final reading before
    #: completing it from the readings it has.
    lease_grace_s: int = Field(default=900, ge=0)
    #: How long a provider's agent may be silent (no ``POST /agents/heartbeat``) before the
    #: clearing loop fails its provider's scheduled and running leases and its offers sit
    #: out the clearings (providers that never sent a heartbeat are not watched). Above the
    #: agents' longest ``poll_s`` (600 s), so that a live agent is never taken for silent.
    agent_grace_s: int = Field(default=900, ge=10, le=86_400)
    #: The firmness horizon (commit late, plan early): slots of each clearing that become
    #: leases; later slots are the buyers' planned schedule, which the next clearing plans
    #: again (:func:`suangu.core.lifecycle.commit`). None: every allocation at once.
    firm_slots: int | None = Field(default=DEFAULT_FIRM_SLOTS, ge=1, le=24 * 14)
    #: Firm-order protection's look-back, hours (0: off): each clearing first clears the
    #: captive firm orders (firm orders only one or two pools can serve) against all the open
    #: capacity, then everyone else with GPUs held back for them
    #: (:func:`suangu.core.lifecycle.protection_levels`; the simulator's
    #: ``protect_firm_hours``).
    protect_firm_hours: int = Field(default=0, ge=0, le=24 * 366)
    #: The operator's carbon price at start, yuan per tonne of CO2, stored as the exchange's
    #: setting when the app starts (``suangu serve --carbon-price``); None: the stored one
    #: (``PUT /market/carbon-price``) stays.
    carbon_price_yuan_per_t: float | None = Field(default=None, ge=0, le=100_000)
    #: The interruptible tier's notice (:mod:`suangu.core.products`): firm demand preempts an
    #: interruptible lease only when its slot starts this many slots or more after the
    #: clearing's first slot.
    preempt_notice_slots: int = Field(default=1, ge=0, le=24 * 14)
    #: The interruptible discount, basis points: an interruptible GPU-hour's reserve is the
    #: offer's reserve less this share (rounded up to whole fen).
    interruptible_discount_bp: int = Field(default=3000, ge=0, le=9999)
    #: Wall-clock limit of one clearing's solve, seconds: the best clearing found by then is
    #: stored, with a status that says whether it is proven optimal (``time_limit``,
    #: ``heuristic`` otherwise; :class:`suangu.core.clearing.ClearingOptions`).
    clearing_time_limit_s: float = Field(default=60.0, gt=0, le=3600)
    #: Wall-clock limit of one indicative quote's what-if clearing (``GET /market/quote``),
    #: seconds, and how many quotes one process computes at once (more get a 503).
    quote_time_limit_s: float = Field(default=5.0, gt=0, le=60)
    quote_concurrency: int = Field(default=2, ge=1, le=64)
    #: Seconds a meter reading may end after the market clock's now (agents' clock skew).
    reading_tolerance_s: int = Field(default=CLOCK_TOLERANCE_S, ge=0, le=3600)
    #: The least PUE a reading's energy bound allows, whatever a site declares
    #: (:mod:`suangu.core.metering`).
    max_pue: float = Field(default=DEFAULT_MAX_PUE, ge=1.0, le=3.0)
    #: The largest request body, bytes: a longer one is a 413 before it is read (before the
    #: key is checked), whether it says its length or comes chunked
    #: (:class:`suangu.api.limits.BodyLimit`).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1 << 30)
    #: The largest YAML job spec (``POST /orders/yaml``), bytes, and how deep it may nest.
    max_yaml_bytes: int = Field(default=262_144, ge=1024, le=1 << 30)
    max_yaml_depth: int = Field(default=20, ge=4, le=200)
    #: The public URL of the API (e.g. ``https://exchange.example.com``) for the ``next``
    #: links of pages; None: ``next`` is a relative URL (path and query). Never read from the
    #: request's ``Host`` or ``X-Forwarded-*`` headers.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    #: Rate limits (:class:`suangu.api.limits.RateLimit`, token buckets in each worker
    #: process): requests per second and burst per API key, per client address without a
    #: key, and failed authentications (401) per client address.
    rate_limit: bool = True
    #: The public dashboard is rendered once per this many seconds of the market clock
    #: (per process and language) and served from that cache in between; 0: every time.
    dashboard_cache_s: int = Field(default=60, ge=0, le=3600)
    key_rate_per_s: float = Field(default=100.0, gt=0, le=1e6)
    key_burst: int = Field(default=1000, ge=1, le=10**7)
    address_rate_per_s: float = Field(default=20.0, gt=0, le=1e6)
    address_burst: int = Field(default=100, ge=1, le=10**7)
    auth_failures_per_s: float = Field(default=1.0, gt=0, le=1e6)
    auth_failure_burst: int = Field(default=20, ge=1, le=10**7)

    @property
    def grid(self) -> TimeGrid:
        return TimeGrid(self.grid_epoch, self.slot_seconds)

    @property
    def protect_slots(self) -> int:
        """Firm-order protection's look-back in slots (0: off)."""
        return math.ceil(self.protect_firm_hours * 3600 / self.slot_seconds)

    @property
    def interval_s(self) -> int:
        """Seconds between two clearings of the loop."""
        return self.clearing_interval_s or self.slot_seconds
