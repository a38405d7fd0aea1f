from django.core.checks import Error, register

from core.rate_limits import configured_rate_problems


@register()
def check_rate_settings(app_configs, **kwargs):
    return [Error(problem, hint="Write a count per period, e.g. 120/min, 10/hour, 5/15min, or off.", id="core.E001")
            for problem in configured_rate_problems()]
