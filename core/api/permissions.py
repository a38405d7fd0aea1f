from rest_framework.permissions import BasePermission, DjangoModelPermissions


class ModelPermissionsWithView(DjangoModelPermissions):
    """Django model permissions, with reading requiring the model's `view` permission too."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


def requires(*perms: str) -> type[BasePermission]:
    """A permission class for an action that changes something other than what its HTTP verb implies
    (e.g. a POST that changes a contact, where DjangoModelPermissions would ask for `add`)."""

    class RequiresPerms(BasePermission):
        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(perms))

    RequiresPerms.__name__ = f"Requires({', '.join(perms)})"
    return RequiresPerms
