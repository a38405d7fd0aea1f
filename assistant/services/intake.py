def on_inbound_message(message):
    pass


def on_message_understood(message):
    pass
