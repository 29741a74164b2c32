"""``balsamd top``: a frame of the campaign read from the store (frame), as text (render),
and the loop that shows frames and reads keys (live)."""
