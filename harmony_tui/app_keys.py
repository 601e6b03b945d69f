"""The app's keys and typed commands: its bindings (with ids, remappable in the config),
what each does, the help screen and palette built from them, and ``\\set``/``\\list``/...."""

from __future__ import annotations

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from harmony_tui.commands import Command, CommandError, parse_command, settings_help

# Keys are chosen not to clash with the prompt's TextArea (ctrl+e/k/y/u/w/z, f6/f7 are its own).
APP_BINDINGS = [
    Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    Binding("ctrl+d", "quit", "Quit", show=False, id="quit_eof", priority=True),
    Binding("escape", "stop", "Stop", id="stop"),
    Binding("f1", "help", "Help", id="help"),
    Binding("ctrl+r", "regenerate", "Retry", id="regenerate"),
    Binding("ctrl+o", "edit_last", "Edit last", show=False, id="edit_last"),
    Binding("ctrl+n", "new_chat", "New", id="new_chat"),
    Binding("f8", "copy_answer", "Copy answer", show=False, id="copy_answer"),
    Binding("f9", "copy_code", "Copy code", show=False, id="copy_code"),
    Binding("f2", "toggle_pane('thinking')", "Thinking", show=False, id="toggle_thinking"),
    Binding("f3", "toggle_pane('tools')", "Tools", show=False, id="toggle_tools"),
    Binding("f4", "toggle_pane('settings')", "Settings", show=False, id="toggle_settings"),
    Binding("f5", "focus_settings", "Edit settings", show=False, id="focus_settings"),
    Binding("f6", "focus_prompt", "Prompt", show=False, id="focus_prompt"),
    Binding("ctrl+l", "pick_model", "Model", id="pick_model"),
    Binding("ctrl+t", "pick_theme", "Theme", show=False, id="pick_theme"),
    Binding("ctrl+s", "sessions", "Chats", id="sessions"),
    Binding("ctrl+g", "toggle_server", "API", id="toggle_server"),
    Binding("f12", "toggle_pane('requests')", "Requests", show=False, id="toggle_requests"),
    # Push to talk: kitty-protocol terminals send ctrl+space, legacy ones ctrl+@ (NUL).
    Binding("ctrl+space", "voice", "Voice", show=False, id="voice", priority=True),  # F1, palette
    Binding("ctrl+@", "voice", "Voice", show=False, id="voice_legacy", priority=True),
]

PALETTE_TITLES = {"regenerate": "Regenerate", "new_chat": "New chat",
                  "toggle_server": "API server",
                  "toggle_pane('thinking')": "Thinking pane", "toggle_pane('tools')":
                  "Tool calls pane", "toggle_pane('settings')": "Settings sidebar",
                  "toggle_pane('requests')": "API requests pane"}
ACTION_HELP = {
    "regenerate": "Generate the last answer again",
    "edit_last": "Put the last prompt back in the input and remove its answer",
    "new_chat": "Start a new chat",
    "copy_answer": "Copy the last answer to the clipboard",
    "copy_code": "Copy the last code block of the last answer",
    "toggle_pane('thinking')": "Show or hide the thinking pane",
    "toggle_pane('tools')": "Show or hide the tool-call pane",
    "toggle_pane('settings')": "Show or hide the settings sidebar",
    "focus_settings": "Move to the settings sidebar to change values",
    "focus_prompt": "Move back to the prompt",
    "pick_model": "Load another model (demo, ./models, Hugging Face cache)",
    "pick_theme": "Choose a theme",
    "sessions": "Saved chats: open, search, rename, delete, export",
    "toggle_server": "Start or stop the OpenAI-compatible API server on the loaded model",
    "toggle_pane('requests')": "Show or hide the API requests pane",
    "stop": "Stop generating (keeps the partial answer)",
    "help": "Show keys and commands",
    "voice": "Push to talk: listen; again: send what was said; while speaking: stop speaking",
}


class KeysMixin:
    """F1: every key and command of the app and its widgets; the command palette's entries."""

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)  # Theme, Quit, Keys, ...
        seen = {"help", "pick_theme", "toggle_server"}  # said below or by Textual already
        for binding in APP_BINDINGS:
            if binding.action in ACTION_HELP and binding.action not in seen:
                seen.add(binding.action)
                yield SystemCommand(PALETTE_TITLES.get(binding.action, binding.description
                                                       or binding.action),
                                    ACTION_HELP[binding.action],
                                    lambda action=binding.action: self.run_action(action))
        yield SystemCommand("Help: keys and commands", ACTION_HELP["help"], self.action_help)
        server = "stop" if self.server is not None else "start"
        yield SystemCommand(f"API server: {server}", ACTION_HELP["toggle_server"],
                            self.action_toggle_server)
        for name in ("python", "browser", "apply_patch"):
            state = "on" if getattr(self.toolset.config, name) is not None else "off"
            yield SystemCommand(f"Tools: {name} ({state})", f"Turn the {name} tool "
                                f"{'off' if state == 'on' else 'on'} for the next turns",
                                lambda n=name: self.action_toggle_tool(n))

    def action_help(self) -> None:
        from harmony_tui.screens.help import HelpScreen, help_markdown

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(help_markdown(self.binding_rows(), self.widget_help())))

    def binding_rows(self) -> list[tuple[str, str, str]]:
        """(id, keys, description) of every app and widget binding, keymap applied."""
        from harmony_tui.widgets.prompt_input import PromptInput as _Prompt
        from harmony_tui.widgets.settings import SettingsList
        from harmony_tui.widgets.settings import SettingsSidebar as _Side

        rows = []
        for owner in (type(self), _Prompt, SettingsList, _Side):
            for binding in owner.BINDINGS:
                if not isinstance(binding, Binding) or not binding.id:
                    continue
                keys = self.user_keymap.get(binding.id, binding.key)
                description = ACTION_HELP.get(binding.action, binding.description)
                rows.append((binding.id, keys, description or binding.action))
        rows.append(("command_palette", "ctrl+p", "Command palette: every action"))
        rows.append(("prompt.submit", "enter", "Send the prompt"))
        return rows

    def widget_help(self) -> list[tuple[str, str]]:
        from harmony_tui.widgets import (
            conversation,
            messages,
            panes,
            prompt_input,
            requests,
            settings,
            status_bar,
        )

        return [("Prompt", prompt_input.HELP), ("Conversation", conversation.HELP),
                ("Answers", messages.HELP), ("Thinking pane", panes.THINKING_HELP),
                ("Tool calls pane", panes.TOOLS_HELP),
                ("API requests pane", requests.REQUESTS_HELP), ("Settings sidebar", settings.HELP),
                ("Status bar", status_bar.HELP)]

    async def run_command(self, text: str) -> None:
        try:
            command = parse_command(text)
        except CommandError as err:  # said once, in the conversation (no toast)
            await self.conversation.add_note(str(err), error=True)
            return
        await self.apply_command(command)

    async def apply_command(self, command: Command) -> None:
        if command.name == "quit":
            await self.action_quit()
        elif command.name == "help" and command.setting == "set":
            await self.conversation.add_note(settings_help())
        elif command.name == "help":
            self.action_help()
        elif command.name == "clear":
            await self.action_new_chat()
        elif command.name == "list":
            lines = [f"{name} = {value}" + (f"   ({self.param_origins[name]})"
                                              if name in self.param_origins else "")
                     for name, value in self.params.model_dump().items()]
            await self.conversation.add_note("Settings for the next request:\n" +
                                             "\n".join(lines))
        elif command.name == "set":
            assert command.setting is not None
            if self.settings.try_set(command.setting, command.value):
                await self.conversation.add_note(f"{command.setting} = {command.value}")
            else:  # the sidebar may be hidden: the reason goes in the conversation too
                await self.conversation.add_note(self.settings.message_text, error=True)
