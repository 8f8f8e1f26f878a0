"""A person's account: sign-in, account security, the step-up, connected apps and SMART consent."""
