"""The assistant's fixed sentences in the languages it answers in (English when the language is unknown)."""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "note_saved": "✅ Saved note",
        "task_created": "✅ Created task: {title}",
        "task_updated": "✅ Updated task: {title}",
        "task_completed": "✅ Done: {title}",
        "project_created": "✅ Created project: {name}",
        "goal_created": "✅ Created goal: {title}",
        "reminder_set": "⏰ Reminder set for {when}: {text}",
        "preferences_changed": "✅ Settings updated: {changes}",
        "content_requested": "✅ Writing: {brief}",
        "content_completed": "✅ Closed: {brief}",
        "content_ready": "📝 Your draft is ready ({what}):\n\n{draft}",
        "failed": "⚠️ I couldn't do that ({reason}). Your message is kept. Try again in other words, "
                  "e.g. \"create a task to call Ana tomorrow\".",
        "unavailable": "⚠️ I can't handle messages right now. Yours are kept and I'll act on them as soon as "
                       "I'm back.",
        "ask_platform": "Where will it be published?",
        "ask_length": "How long should it be?",
        "ask_tone": "Which tone?",
        "ask_topic": "What is it about, in a few words?",
        "choose": "Choose",
        "number_hint": "Reply with the number.",
        "no_tasks": "No tasks match.",
        "tasks_header": "Your tasks ({count}):",
        "no_notes": "No notes match \"{query}\".",
        "notes_header": "Notes matching \"{query}\" ({count}):",
    },
    "es": {
        "note_saved": "✅ Nota guardada",
        "task_created": "✅ Tarea creada: {title}",
        "task_updated": "✅ Tarea actualizada: {title}",
        "task_completed": "✅ Hecho: {title}",
        "project_created": "✅ Proyecto creado: {name}",
        "goal_created": "✅ Objetivo creado: {title}",
        "reminder_set": "⏰ Recordatorio para {when}: {text}",
        "preferences_changed": "✅ Ajustes actualizados: {changes}",
        "content_requested": "✅ Escribiendo: {brief}",
        "content_completed": "✅ Cerrado: {brief}",
        "content_ready": "📝 Tu borrador está listo ({what}):\n\n{draft}",
        "failed": "⚠️ No pude hacerlo ({reason}). Tu mensaje queda guardado. Prueba con otras palabras, "
                  "p. ej. \"crea una tarea para llamar a Ana mañana\".",
        "unavailable": "⚠️ Ahora no puedo procesar mensajes. Los tuyos quedan guardados y los atenderé en "
                       "cuanto vuelva.",
        "ask_platform": "¿Dónde se publicará?",
        "ask_length": "¿Qué extensión debe tener?",
        "ask_tone": "¿Qué tono?",
        "ask_topic": "¿De qué trata, en pocas palabras?",
        "choose": "Elegir",
        "number_hint": "Responde con el número.",
        "no_tasks": "No hay tareas que coincidan.",
        "tasks_header": "Tus tareas ({count}):",
        "no_notes": "No hay notas con \"{query}\".",
        "notes_header": "Notas con \"{query}\" ({count}):",
    },
    "pt": {
        "note_saved": "✅ Nota salva",
        "task_created": "✅ Tarefa criada: {title}",
        "task_updated": "✅ Tarefa atualizada: {title}",
        "task_completed": "✅ Feito: {title}",
        "project_created": "✅ Projeto criado: {name}",
        "goal_created": "✅ Meta criada: {title}",
        "reminder_set": "⏰ Lembrete para {when}: {text}",
        "preferences_changed": "✅ Preferências atualizadas: {changes}",
        "content_requested": "✅ Escrevendo: {brief}",
        "content_completed": "✅ Encerrado: {brief}",
        "content_ready": "📝 Seu rascunho está pronto ({what}):\n\n{draft}",
        "failed": "⚠️ Não consegui fazer isso ({reason}). Sua mensagem está guardada. Tente com outras "
                  "palavras, p. ex. \"crie uma tarefa para ligar para a Ana amanhã\".",
        "unavailable": "⚠️ Não consigo processar mensagens agora. As suas estão guardadas e vou tratá-las "
                       "assim que voltar.",
        "ask_platform": "Onde será publicado?",
        "ask_length": "Qual o tamanho?",
        "ask_tone": "Qual tom?",
        "ask_topic": "Sobre o que é, em poucas palavras?",
        "choose": "Escolher",
        "number_hint": "Responda com o número.",
        "no_tasks": "Nenhuma tarefa encontrada.",
        "tasks_header": "Suas tarefas ({count}):",
        "no_notes": "Nenhuma nota com \"{query}\".",
        "notes_header": "Notas com \"{query}\" ({count}):",
    },
}


def phrase(key: str, language: str = "", **values: object) -> str:
    table = PHRASES.get((language or "en")[:2].lower(), PHRASES["en"])
    return table.get(key, PHRASES["en"][key]).format(**values)
