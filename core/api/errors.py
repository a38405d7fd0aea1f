"""How the API refuses: every refusal answers {"code", "detail", ...}, documented as RefusalSerializer."""

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.api.parsers import printable
from core.api.scoping import related_fields_scope


class RefusalSerializer(serializers.Serializer):
    """What every refused request answers (4xx): a stable code and a readable reason."""

    code = serializers.CharField(help_text="Stable, for programs: e.g. invalid_request, opted_out, mapping_conflict.")
    detail = serializers.CharField(help_text="Readable, for people.")
    errors = serializers.DictField(required=False, help_text="Invalid fields and what is wrong with each.")


REFUSAL = RefusalSerializer


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "Not possible in the resource's current state."
    default_code = "conflict"


def _request_refusal(exc: Exception) -> Exception:
    """Django's refusals of a request body it will not read (raised when DRF first reads request.data), as API
    answers: otherwise they escape DRF and Django answers its HTML 400 page, logged as an error."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLarge(f"The request body is larger than the {limit} bytes the API reads; a file to send is "
                               f"uploaded as multipart (up to {settings.OUTBOUND_MEDIA_MAX_BYTES} bytes).")
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return exceptions.ParseError(str(exc))
    return exc


def api_exception_handler(exc, context):
    """DRF's answers, each with a `code` beside its `detail`; invalid fields listed under `errors`, with
    a readable summary as the detail."""
    exc = _request_refusal(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    # Error messages may quote the input: a lone surrogate in it would make the JSON answer unencodable.
    response.data = printable(response.data)
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"code": "invalid_request", "detail": _errors_summary(errors), "errors": errors}
    elif isinstance(response.data, dict) and "code" not in response.data:
        codes = exc.get_codes()
        response.data = {"code": codes if isinstance(codes, str) else exc.default_code, **response.data}
    return response


def _errors_summary(errors) -> str:
    if isinstance(errors, dict):
        parts = [f"{field}: {_errors_summary(reasons)}" for field, reasons in errors.items()]
        return "; ".join(parts)
    if isinstance(errors, list):
        return " ".join(_errors_summary(reason) for reason in errors)
    return str(errors)


# Every refusal answers {"code", "detail", ...} (see api_exception_handler). A comment, not a docstring:
# drf-spectacular would show a docstring as the description of every operation.
class ReadableErrors:
    def get_exception_handler(self):
        return api_exception_handler


def refuse(status: int, code: str, detail: str) -> Response:
    return Response({"code": code, "detail": detail}, status=status)


def validated(serializer_class, data, *, user=None) -> dict:
    """The validated fields, or a 400 listing what is wrong (raised, answered by api_exception_handler). With
    `user`, rows named in `data` are looked for among those the user may see (core.access)."""
    form = serializer_class(data=data)
    if user is not None:
        related_fields_scope(form, user)
    form.is_valid(raise_exception=True)
    return form.validated_data
