from django.http import HttpRequest, JsonResponse

from monitoring.health import health_report


def health(request: HttpRequest) -> JsonResponse:
    """200 when the platform can take and process work, 503 with the failing checks otherwise."""
    healthy, report = health_report()
    return JsonResponse(report, status=200 if healthy else 503)
