"""Speech output for elders: slow, clear Mandarin and Cantonese voices."""
