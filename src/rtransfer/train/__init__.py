"""Training the controlled study's arms from one base on math-only data: teacher traces (rejection sampling),
off-policy SFT, on-policy SFT and GRPO. Thin layers over TRL; each writes a training directory (outputs.py)."""
