"""
Request bodies sent in chunks (`Transfer-Encoding: chunked`, no Content-Length). Django reads a body by its
Content-Length, so without one it would see an empty body and a view would answer as if nothing was sent.
Views that read such bodies themselves say so with `reads_chunked_bodies = True`; every other view answers
411 Length Required before it runs.
"""

from django.http import HttpRequest, JsonResponse


def is_chunked_without_length(request: HttpRequest) -> bool:
    return ("chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
            and not request.META.get("CONTENT_LENGTH"))


class ChunkedBodyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        view_class = getattr(view_func, "view_class", None) or getattr(view_func, "cls", None)
        if not is_chunked_without_length(request) or getattr(view_class, "reads_chunked_bodies", False):
            return None
        return JsonResponse({"code": "length_required",
                             "detail": "Send the body with a Content-Length header (chunked bodies are not read)."},
                            status=411)
