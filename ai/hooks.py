"""
What the AI announces to the apps above it (the assistant): they register receivers in their
`AppConfig.ready()`.
"""

from core.hooks import Hook

message_understood = Hook(
    "message_understood",
    doc="An inbound message's text is known and its AI steps are over (transcribed if it was audio, "
        "classified if classification is on; either may have failed or been skipped): receiver(message). "
        "Anything that acts on what a customer said reacts here, never before the transcript exists.",
)
