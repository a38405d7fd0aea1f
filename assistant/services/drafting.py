def draft_make(request_id: int) -> None:
    pass
