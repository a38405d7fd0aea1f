"""Errors of the template workflow, shared by its steps."""


class TemplateWorkflowError(Exception):
    """A step that is not allowed now; `code` names the reason for API clients, the message explains it."""

    def __init__(self, message: str, *, code: str = "not_allowed"):
        super().__init__(message)
        self.code = code
