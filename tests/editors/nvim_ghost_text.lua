-- Driven by test_neovim_ghost_text.py: `nvim --headless --clean -c 'luafile nvim_ghost_text.lua'`
-- (not -l: keys typed in Insert mode need Neovim's main loop). Neovim 0.12's path of the shipped
-- set-up, as a user meets it: open a Python file and enter Insert mode while the model is still
-- loading; wait, typing nothing, for the ghost text (an extmark in the namespace of
-- vim.lsp.inline_completion); accept it with <Tab>; write the file; report what happened as JSON.
local env = vim.env
local api = vim.api
local result = { steps = {}, messages = {}, inline_requests = 0 }
local namespace = api.nvim_create_namespace('nvim.lsp.inline_completion')
local client

local function step(name) table.insert(result.steps, name) end

local function lines_of(bufnr) return api.nvim_buf_get_lines(bufnr, 0, -1, true) end

-- client:stop() loads vim.lsp._watchfiles, which needs vim.re, which needs LPeg 1.1: a Neovim
-- linked against an older LPeg (as ../shared/neovim-0.12, with Debian bookworm's 1.0.2) cannot
-- load it, and stops the server here with the protocol's own shutdown and exit.
local function stop_server()
  result.watchfiles_loads, result.watchfiles_error = pcall(require, 'vim.lsp._watchfiles')
  if result.watchfiles_loads then
    result.watchfiles_error = nil
    client:stop()
  else
    client:request_sync('shutdown', nil, 15000)
    client:notify('exit')
  end
  vim.wait(15000, function() return result.exit ~= nil end, 50)
end

local function finish(err)
  if err then result.error = tostring(err) end
  result.mode = api.nvim_get_mode().mode
  if client then
    local ok, stop_error = pcall(stop_server)
    if not ok then result.error = (result.error or '') .. ' stopping: ' .. tostring(stop_error) end
  end
  local file = assert(io.open(env.CODELLAMA_RESULT, 'w'))
  file:write(vim.json.encode(result))
  file:close()
  vim.cmd('qa!')
end

local function ghost_text(bufnr)
  local marks = api.nvim_buf_get_extmarks(bufnr, namespace, 0, -1, { details = true })
  if #marks == 0 then return nil end
  local _, row, col, details = unpack(marks[1])
  local function text(chunks)
    local parts = {}
    for _, chunk in ipairs(chunks) do table.insert(parts, chunk[1]) end
    return table.concat(parts)
  end
  local shown = { text(details.virt_text or {}) }
  for _, chunks in ipairs(details.virt_lines or {}) do table.insert(shown, text(chunks)) end
  return { row = row, col = col, marks = #marks, pos = details.virt_text_pos, lines = shown }
end

local function accept_and_write(bufnr)
  vim.api.nvim_feedkeys(vim.keycode('<Tab>'), 't', false)
  vim.defer_fn(function()
    result.after = lines_of(bufnr)
    result.cursor = api.nvim_win_get_cursor(0)
    result.ghost_after_accept = ghost_text(bufnr) or vim.NIL
    step('accepted')
    vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 't', false)
    vim.defer_fn(function()
      vim.cmd.write()
      local file = assert(io.open(env.CODELLAMA_FILE, 'rb'))
      result.written = file:read('*a')
      file:close()
      step('written')
      finish()
    end, 100)
  end, 300)
end

local function main()
  vim.cmd.source(env.CODELLAMA_REPO .. '/editors/nvim/codellama.lua')
  vim.lsp.config('codellama', {
    cmd = { env.CODELLAMA_LSP_CMD },
    init_options = { model = env.CODELLAMA_MODEL, maxNewTokens = 24 },
    handlers = {
      ['window/showMessage'] = function(_, params) table.insert(result.messages, params) end,
    },
    on_exit = function(code, signal) result.exit = { code = code, signal = signal } end,
  })
  result.nvim_version = tostring(vim.version())
  vim.cmd.edit(env.CODELLAMA_FILE)
  local bufnr = api.nvim_get_current_buf()
  result.filetype = vim.bo[bufnr].filetype
  result.fileformat = vim.bo[bufnr].fileformat
  result.before = lines_of(bufnr)
  -- Whether the model was loaded when the server read the first automatic request: the server
  -- answers this stats request after reading that one.
  api.nvim_create_autocmd('LspRequest', {
    buffer = bufnr,
    callback = function(args)
      local request = args.data.request
      if request.method ~= 'textDocument/inlineCompletion' or request.type ~= 'pending' then
        return
      end
      result.inline_requests = result.inline_requests + 1
      if result.inline_requests == 1 then
        client:request('codellama/stats', {}, function(_, stats)
          result.model_at_first_request = stats and stats.model or vim.NIL
        end, bufnr)
      end
    end,
  })
  api.nvim_create_autocmd('LspAttach', {
    buffer = bufnr,
    callback = function() result.mode_at_attach = api.nvim_get_mode().mode end,
  })
  -- Insert mode at the end of the marked line, at once (before the server has answered
  -- `initialize`) or once the client is attached; then nothing is typed until the ghost text.
  local row = tonumber(env.CODELLAMA_LINE) -- 0-based
  api.nvim_win_set_cursor(0, { row + 1, 0 })
  local insert_at_once = env.CODELLAMA_INSERT == 'at-once'
  if insert_at_once then api.nvim_feedkeys('A', 'n', false) end
  local started = vim.uv.now()
  local timer = assert(vim.uv.new_timer())
  timer:start(20, 100, vim.schedule_wrap(function()
    if not client then
      client = vim.lsp.get_clients({ bufnr = bufnr, name = 'codellama' })[1]
      if not client then return end
      step('attached')
      result.offset_encoding = client.offset_encoding
      result.inline_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
      if not insert_at_once then api.nvim_feedkeys('A', 'n', false) end
      return
    end
    local ghost = ghost_text(bufnr)
    if ghost then
      timer:stop()
      result.ghost_ms = vim.uv.now() - started
      result.ghost = ghost
      result.requests_before_ghost = result.inline_requests
      result.mode_with_ghost = api.nvim_get_mode().mode
      result.cursor_with_ghost = api.nvim_win_get_cursor(0)
      step('ghost text')
      accept_and_write(bufnr)
    elseif vim.uv.now() - started > 120000 then
      timer:stop()
      finish('no ghost text within 120 s')
    end
  end))
end

local ok, err = xpcall(main, debug.traceback)
if not ok then finish(err) end
