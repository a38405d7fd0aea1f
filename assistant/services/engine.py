def turn_run(message_id: int) -> None:
    pass


def waiting_turns_retry() -> int:
    return 0
