"""Tests of the pure formats: job specs and results read from untrusted bytes."""
