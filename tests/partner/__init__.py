"""Tests of the partner Point API (seed 001)."""
