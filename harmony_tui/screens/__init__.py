"""Full-screen screens of the app (help, model picker)."""
