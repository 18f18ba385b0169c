"""The Gradio web demo: `ui` (layout and callbacks) and `plots` (the figures beside the player)."""
