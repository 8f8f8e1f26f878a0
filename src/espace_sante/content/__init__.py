"""Checking a document's bytes before it is stored: the type is decided from the content (never from what the
client declares), PDFs with active content and XML with a DOCTYPE are refused (SECURITY.md V12 12.2.1,
12.4.2; STACK.md rows on pikepdf, python-magic and lxml). The API is `content.checks`."""
