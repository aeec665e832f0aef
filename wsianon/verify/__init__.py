"""Independent verification of outputs: reads outputs with their own parsers and the profile data, never a redactor's code."""
