-- Driven by test_neovim.py: `nvim --headless --clean -l nvim_completion.lua`.
-- Sources the shipped editors/nvim/codellama.lua, points it at the test's server and model, opens
-- a Python file, asks the real server for completions at a cursor after an emoji and CJK text,
-- applies the completion's textEdit like Neovim does, and writes what happened as JSON.
local env = vim.env
local result = { messages = {}, steps = {} }

local function step(name) table.insert(result.steps, name) end

local function write_result()
  local file = assert(io.open(env.CODELLAMA_RESULT, 'w'))
  file:write(vim.json.encode(result))
  file:close()
end

local function wait(ms, what, condition)
  if not vim.wait(ms, condition, 50) then error('timed out waiting for ' .. what, 0) end
end

local function main()
  vim.cmd.source(env.CODELLAMA_REPO .. '/editors/nvim/codellama.lua')
  step('sourced')
  -- The shipped set-up, with the test's server, model and a short completion length.
  vim.lsp.config('codellama', {
    cmd = { env.CODELLAMA_LSP_CMD },
    init_options = { model = env.CODELLAMA_MODEL, maxNewTokens = 24 },
    handlers = {
      ['window/showMessage'] = function(_, params)
        table.insert(result.messages, params)
      end,
    },
    on_exit = function(code, signal)
      result.exit = { code = code, signal = signal }
    end,
  })
  result.nvim_version = tostring(vim.version())

  vim.cmd.edit(env.CODELLAMA_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  result.filetype = vim.bo[bufnr].filetype
  local client
  wait(30000, 'the client to attach', function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'codellama' })[1]
    return client ~= nil and client.initialized == true
  end)
  step('attached')
  result.offset_encoding = client.offset_encoding
  result.server_name = client.server_info and client.server_info.name
  -- Neovim 0.12's ghost text asks only servers that advertise it.
  result.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil

  local model = vim.NIL
  wait(120000, 'the model to load', function()
    local reply = client:request_sync('codellama/stats', {}, 5000, bufnr)
    model = reply and reply.result and reply.result.model or vim.NIL
    return model ~= vim.NIL
  end)
  result.model = model
  step('model loaded')

  -- The cursor: at the end of the marked line, after a partial word.
  local row = tonumber(env.CODELLAMA_LINE) -- 0-based
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  local col = #line -- bytes: Neovim negotiated utf-8
  vim.o.virtualedit = 'onemore' -- the cursor after the last character, as in insert mode
  vim.api.nvim_win_set_cursor(0, { row + 1, col })
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  result.cursor = { line = row, byte = col, sent = params.position }
  result.before = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n')

  -- Ghost text, asked directly (Neovim 0.11 has no inline completion of its own).
  local inline = client:request_sync('textDocument/inlineCompletion', {
    textDocument = params.textDocument,
    position = params.position,
    context = { triggerKind = 1 },
  }, 60000, bufnr)
  result.inline = inline and (inline.err or inline.result)
  step('inline')

  local reply = client:request_sync('textDocument/completion', {
    textDocument = params.textDocument,
    position = params.position,
    context = { triggerKind = 1 },
  }, 60000, bufnr)
  if not reply or reply.err then error('completion failed: ' .. vim.inspect(reply)) end
  result.completion = reply.result
  step('completion')
  local item = reply.result.items[1]
  if item and item.textEdit then
    vim.lsp.util.apply_text_edits({ item.textEdit }, bufnr, client.offset_encoding)
    result.after = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n')
    step('applied')
  end

  local stopping = vim.uv.hrtime()
  client:stop()
  wait(15000, 'the client to stop', function() return client:is_stopped() end)
  wait(15000, 'the server to exit', function() return result.exit ~= nil end)
  result.stop_ms = math.floor((vim.uv.hrtime() - stopping) / 1e6)
  step('stopped')
end

local ok, err = xpcall(main, debug.traceback)
if not ok then result.error = tostring(err) end
write_result()
vim.cmd('qa!')
