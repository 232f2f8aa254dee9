"""Measuring a running server: starting one as a child process, open-loop load generation."""
