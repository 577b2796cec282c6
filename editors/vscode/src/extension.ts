// A thin client for codellama-lsp: it starts the server over stdio and lets vscode-languageclient
// do the rest. Ghost text comes from the client's built-in LSP 3.18 `textDocument/inlineCompletion`
// support (vscode-languageclient >= 10), popup completion from `textDocument/completion`.
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

const SECTION = "codellama";

/** Settings of the extension itself: changing one restarts the server. */
const LAUNCH_SETTINGS = ["serverPath", "serverArgs"] as const;

/** The server's settings, camelCase, exactly as codellama-lsp reads them: every `codellama.*`
 * setting this extension contributes (package.json) except the launch settings. */
let serverSettingKeys: string[] = [];
let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem | undefined;
let outputChannel: vscode.LogOutputChannel | undefined;

/** The `codellama.*` values the server understands (never the launch settings: it would warn). */
export function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const settings: Record<string, unknown> = {};
  for (const key of serverSettingKeys) {
    const value = config.get<unknown>(key);
    if (value !== undefined && value !== null) {
      // Configuration values are read-only proxies: send plain JSON.
      settings[key] = JSON.parse(JSON.stringify(value));
    }
  }
  return settings;
}

function serverOptions(): ServerOptions {
  const config = vscode.workspace.getConfiguration(SECTION);
  const command = (config.get<string>("serverPath") || "codellama-lsp").trim();
  const args = (config.get<string[]>("serverArgs") ?? []).filter((arg) => typeof arg === "string");
  // Plain stdio: no `transport`, which would add a `--stdio` argument the server does not take.
  const executable = { command, args };
  return { run: executable, debug: executable };
}

function clientOptions(): LanguageClientOptions {
  return {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: serverSettings(),
    outputChannel,
    synchronize: { configurationSection: SECTION },
    middleware: {
      workspace: {
        // Send only the server's own settings (not serverPath / serverArgs) under `codellama`.
        didChangeConfiguration: async () => {
          await client?.sendNotification(DidChangeConfigurationNotification.type, {
            settings: { [SECTION]: serverSettings() },
          });
        },
      },
    },
  };
}

function showState(state: State): void {
  if (!statusItem) {
    return;
  }
  switch (state) {
    case State.Starting:
      statusItem.text = "$(loading~spin) Code Llama";
      statusItem.tooltip = "codellama-lsp is starting";
      break;
    case State.Running:
      statusItem.text = "$(sparkle) Code Llama";
      statusItem.tooltip = "codellama-lsp is running: click for its output";
      break;
    default:
      statusItem.text = "$(error) Code Llama";
      statusItem.tooltip = "codellama-lsp is not running: click for its output";
  }
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const next = new LanguageClient("codellama", "Code Llama", serverOptions(), clientOptions());
  client = next;
  context.subscriptions.push(next.onDidChangeState((event) => showState(event.newState)));
  try {
    await next.start();
  } catch (error) {
    const command = vscode.workspace.getConfiguration(SECTION).get<string>("serverPath");
    const message = error instanceof Error ? error.message : String(error);
    outputChannel?.error(`Could not start '${command}': ${message}`);
    showState(State.Stopped);
    void vscode.window
      .showErrorMessage(
        `Code Llama: could not start the language server '${command}' (set codellama.serverPath). ${message}`,
        "Show Output",
      )
      .then((choice) => {
        if (choice) {
          outputChannel?.show(true);
        }
      });
  }
}

async function stopClient(): Promise<void> {
  const current = client;
  client = undefined;
  if (current) {
    try {
      await current.stop();
    } catch {
      // The server may already be gone; nothing more to do.
    }
  }
}

async function restartClient(context: vscode.ExtensionContext): Promise<void> {
  await stopClient();
  await startClient(context);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const contributed: Record<string, unknown> =
    context.extension.packageJSON?.contributes?.configuration?.properties ?? {};
  serverSettingKeys = Object.keys(contributed)
    .filter((name) => name.startsWith(`${SECTION}.`))
    .map((name) => name.slice(SECTION.length + 1))
    .filter((key) => !(LAUNCH_SETTINGS as readonly string[]).includes(key));
  outputChannel = vscode.window.createOutputChannel("Code Llama", { log: true });
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.name = "Code Llama";
  statusItem.command = "codellama.showOutput";
  statusItem.show();
  context.subscriptions.push(
    outputChannel,
    statusItem,
    vscode.commands.registerCommand("codellama.restartServer", () => restartClient(context)),
    vscode.commands.registerCommand("codellama.showOutput", () => outputChannel?.show(true)),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (LAUNCH_SETTINGS.some((key) => event.affectsConfiguration(`${SECTION}.${key}`))) {
        void restartClient(context);
      }
    }),
  );
  showState(State.Starting);
  await startClient(context);
}

export function deactivate(): Thenable<void> | undefined {
  return stopClient();
}
