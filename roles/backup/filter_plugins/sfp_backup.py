"""`sfp_backup_on_calendar`: a five-field cron expression as a systemd OnCalendar expression."""

from __future__ import annotations

from typing import Any

_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _field(text: str, width: int) -> str:
    parts = []
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            base = "*" if not step else "0"
        elif "-" in base and not step:
            lo, hi = base.split("-")
            base = f"{int(lo):0{width}d}..{int(hi):0{width}d}"
        else:
            base = f"{int(base.split('-')[0]):0{width}d}"
        parts.append(base + (f"/{int(step)}" if step else ""))
    return ",".join(parts)


def _dow(text: str) -> str:
    if text == "*":
        return ""
    out = []
    for item in text.split(","):
        if "-" in item:
            lo, hi = item.split("-")
            out.append(f"{_DAYS[int(lo)]}..{_DAYS[int(hi)]}")
        else:
            out.append(_DAYS[int(item)])
    return ",".join(out) + " "


def on_calendar(expr: str) -> str:
    """'17 3 * * *' -> '*-*-* 03:17:00'; '0 */6 * * 1-5' -> 'Mon..Fri *-*-* 00/6:00:00'."""
    minute, hour, dom, month, dow = expr.split()
    return f"{_dow(dow)}*-{_field(month, 2)}-{_field(dom, 2)} {_field(hour, 2)}:{_field(minute, 2)}:00"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_backup_on_calendar": on_calendar}
