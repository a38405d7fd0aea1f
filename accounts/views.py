"""The two-factor pages: enrol an authenticator app, give a code at sign-in, see and renew backup codes."""

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import logout
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login

from accounts import services
from accounts.forms import CodeForm
from accounts.lockout import lockout_response

# New backup codes wait here between the action that made them and the page that shows them, once.
NEW_CODES_SESSION_KEY = "accounts_new_backup_codes"


def _page(request: HttpRequest, template: str, **context) -> HttpResponse:
    # No app list beside these pages: until the second factor is given, none of it would open.
    return render(request, template, {**admin.site.each_context(request), "is_nav_sidebar_enabled": False,
                                      **context})


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("admin:index")


def _with_next(view_name: str, request: HttpRequest) -> str:
    return f"{reverse(view_name)}?{urlencode({'next': _next_url(request)})}"


def _locked_out(request: HttpRequest) -> HttpResponse:
    # The password was right but the codes were not: the half-open session ends with the lockout.
    logout(request)
    return lockout_response(request)


def _verified(request: HttpRequest, device) -> None:
    request.session.cycle_key()  # a new session id for the now fully signed-in session
    otp_login(request, device)
    services.sign_in_completed(request, request.user)


def verify_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    state = services.request_two_factor_state(request)
    if user.is_verified():
        return redirect(_next_url(request))
    if not state.enrolled:
        return redirect(_with_next("accounts:two_factor_enrol", request) if state.required else _next_url(request))
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        with services.one_code_attempt_at_a_time(user):
            if not services.sign_in_allowed(request, user):
                return _locked_out(request)
            if form.is_valid():
                device = services.second_factor_check(user=user, code=form.cleaned_data["code"])
                if device is not None:
                    _verified(request, device)
                    return redirect(_next_url(request))
                if services.wrong_code_count(request, user):
                    return _locked_out(request)
                form.add_error("code", "That code is not right. Type the code your authenticator app shows now, "
                                       "or one of your backup codes.")
    return _page(request, "accounts/verify.html", title="Two-factor sign-in", form=form, next=_next_url(request))


def enrol_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    state = services.request_two_factor_state(request)
    if state.enrolled:  # a second authenticator comes only after a reset, never past the first one
        return redirect("accounts:two_factor" if user.is_verified() else _with_next("accounts:two_factor_verify",
                                                                                      request))
    device = services.authenticator_for_enrolment(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.authenticator_enrol(user=user, device=device, code=form.cleaned_data["code"])
        except services.CodeRefused:
            form.add_error("code", "That code does not match. Type the six digits the app shows now (they change "
                                   "every 30 seconds), and check that the phone's clock is right.")
        else:
            _verified(request, device)
            request.session[NEW_CODES_SESSION_KEY] = codes
            return redirect(_with_next("accounts:two_factor_backup_codes", request))
    return _page(request, "accounts/enrol.html", title="Set up two-factor sign-in", form=form,
                 secret=services.authenticator_secret(device), required=state.required, next=_next_url(request))


def enrol_qr(request: HttpRequest) -> HttpResponse:
    """The enrolment's QR code. It carries the secret: it is served only to its user, only before the
    authenticator is confirmed, and never stored by a cache (the admin's views send no-store)."""
    if services.request_two_factor_state(request).enrolled:
        raise Http404
    device = services.authenticator_for_enrolment(request.user)
    return HttpResponse(services.authenticator_qr_svg(device), content_type="image/svg+xml")


def backup_codes_page(request: HttpRequest) -> HttpResponse:
    codes = request.session.pop(NEW_CODES_SESSION_KEY, None)
    return _page(request, "accounts/backup_codes.html", title="Your backup codes", codes=codes,
                 next=_next_url(request))


def two_factor_page(request: HttpRequest) -> HttpResponse:
    """The user's own two-factor settings: their authenticator, their backup codes, and turning it off where
    it is not required."""
    user = request.user
    state = services.request_two_factor_state(request)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "backup_codes" and state.enrolled:
            request.session[NEW_CODES_SESSION_KEY] = services.backup_codes_regenerate(user=user)
            return redirect("accounts:two_factor_backup_codes")
        if action == "turn_off" and state.enrolled and not state.required:
            services.two_factor_reset(user=user, actor=user)
            messages.success(request, "Two-factor sign-in is off: your authenticator and backup codes are removed.")
        return redirect("accounts:two_factor")
    return _page(request, "accounts/two_factor.html", title="Two-factor sign-in", state=state,
                 authenticator=services.authenticator_of(user), backup_codes_left=services.backup_codes_left(user))
