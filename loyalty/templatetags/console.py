"""Template helpers of the operator console."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key, 0) if mapping else 0


@register.filter
def percent(part, whole):
    try:
        return min(100, max(0, round(100 * int(part) / int(whole))))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0
