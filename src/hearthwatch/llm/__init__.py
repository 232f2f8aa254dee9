"""The LLM service: a real engine under a supervisor, hardware profiles, and an admission
gateway that enforces sessions and queue depth and measures TTFT and tokens/s."""
